"""Issue #12 §3: value sanity at intake. A TP/SL nearer than MIN_TP_SL_PCT (fees and spread would eat
it) or farther than MAX_TP_PCT / MAX_SL_PCT is a recorded 400 naming the field, on `POST /signals/bounce`
(tp_pct/sl_pct) and on `POST /orders` (tp_price/sl_price, the same distances computed from the entry)."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from oms.amounts import level_distance_errors, level_distance_pct
from oms.models import Position
from oms.tests.test_bad_input import assert_recorded_400, post

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "overrides,field,words",
    [
        ({"tp_pct": 0.1}, "tp_pct", "nearer than MIN_TP_SL_PCT"),
        ({"sl_pct": 0.05}, "sl_pct", "nearer than MIN_TP_SL_PCT"),
        ({"tp_pct": 25}, "tp_pct", "farther than MAX_TP_PCT"),
        ({"sl_pct": 12}, "sl_pct", "farther than MAX_SL_PCT"),
        ({"side": "SELL", "tp_pct": 0.19}, "tp_pct", "nearer than MIN_TP_SL_PCT"),
        ({"side": "SELL", "sl_pct": 10.5}, "sl_pct", "farther than MAX_SL_PCT"),
    ],
)
def test_a_signal_level_too_near_or_too_far_is_a_recorded_400_naming_the_field(
    anon_client, signal_body, settings, overrides, field, words
):
    response = post(anon_client, signal_body(**overrides))
    row = assert_recorded_400(response, settings, field)
    assert words in response.json()["errors"][field][0]
    assert words in row.reason


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the bot's usual 4.5 / 1.5
        {"tp_pct": None, "sl_pct": None},  # the defaults from settings
        {"tp_pct": 0.2, "sl_pct": 0.2},  # the bounds themselves are accepted
        {"tp_pct": 20, "sl_pct": 10},
        {"side": "SELL", "tp_pct": 20, "sl_pct": 10},
    ],
)
def test_levels_within_the_bounds_and_the_defaults_open(anon_client, signal_body, overrides):
    response = post(anon_client, signal_body(**overrides))
    assert response.status_code == 200, response.content
    assert Position.objects.count() == 1


def test_the_bounds_follow_the_settings(anon_client, signal_body, settings):
    settings.MIN_TP_SL_PCT = Decimal("2")
    response = post(anon_client, signal_body(tp_pct=4.5, sl_pct=1.5))
    assert response.status_code == 400 and list(response.json()["errors"]) == ["sl_pct"]
    settings.MIN_TP_SL_PCT, settings.MAX_TP_PCT = Decimal("0.2"), Decimal("4")
    response = post(anon_client, signal_body(tp_pct=4.5, sl_pct=1.5))
    assert response.status_code == 400 and list(response.json()["errors"]) == ["tp_pct"]


def order(**overrides) -> dict:
    return {
        "symbol": "BTCUSDT",
        "side": "long",
        "qty": 1,
        "entry_price": 100,
        "tp_price": 104.5,
        "sl_price": 98.5,
        **overrides,
    }


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"tp_price": 100.1}, "tp_price"),  # 0.1 %
        ({"sl_price": 99.9}, "sl_price"),
        ({"tp_price": 125}, "tp_price"),  # 25 %
        ({"sl_price": 85}, "sl_price"),  # 15 %
        ({"side": "short", "tp_price": 99.95, "sl_price": 101.5}, "tp_price"),
        ({"side": "short", "tp_price": 95.5, "sl_price": 111}, "sl_price"),
    ],
)
def test_manual_orders_apply_the_same_distances_from_the_entry(operator_client, overrides, field):
    response = operator_client.post("/orders", order(**overrides), format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == [field]
    assert "from the entry" in response.json()["errors"][field][0]
    assert Position.objects.count() == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"tp_price": None, "sl_price": None},
        {"tp_price": 120, "sl_price": 90},
        {"side": "short", "tp_price": 80, "sl_price": 110},
    ],
)
def test_manual_orders_within_the_bounds_open(operator_client, overrides):
    response = operator_client.post("/orders", order(**overrides), format="json")
    assert response.status_code == 201, response.content


def test_distance_helpers():
    assert level_distance_pct(entry_price=Decimal("200"), level=Decimal("190")) == Decimal("5")
    assert level_distance_pct(entry_price=Decimal("200"), level=None) is None
    assert level_distance_errors(tp_pct=None, sl_pct=None) == {}
    assert list(level_distance_errors(tp_pct=Decimal("0.1"), sl_pct=Decimal("11"))) == ["tp_pct", "sl_pct"]


@pytest.mark.parametrize(
    "env,key",
    [
        ({"DEFAULT_TP_PCT": "25"}, "DEFAULT_TP_PCT"),
        ({"DEFAULT_SL_PCT": "0.1"}, "DEFAULT_SL_PCT"),
        ({"MAX_SL_PCT": "1"}, "DEFAULT_SL_PCT"),
    ],
)
def test_defaults_outside_the_bounds_refuse_to_start(env, key):
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "ENVIRONMENT", "SECRET_KEY"}}
    clean.update(LOMS_ENV_FILE="/nonexistent", **env)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'lomsite.settings'); django.setup()",
        ],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and key in result.stderr and "ImproperlyConfigured" in result.stderr
