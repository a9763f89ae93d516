"""Sizing by risk (issue #12 §4): a signal risks RISK_PER_TRADE_PCT of its epoch's equity down to its stop."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from oms.brokers import reset_brokers
from oms.exceptions import RiskLimitExceeded
from oms.models import Position, Signal, SignalOutcome
from oms.services.positions import PositionRequest, position_open
from oms.services.signals import signal_ingest
from oms.tests.factories import closed_position, open_position
from oms.tests.test_broker_exchange import configure
from tests.exchange_standin import StandIn

pytestmark = pytest.mark.django_db


@pytest.fixture
def risk_one_pct(settings):
    settings.RISK_PER_TRADE_PCT = Decimal("1")
    settings.STARTING_CAPITAL_USDT = Decimal("10000")


def bounce(signal_body, **overrides) -> dict:
    """A long at 100 with its stop at 98 (sl_pct 2), and a qty of its own that sizing replaces."""
    return signal_ingest(payload=signal_body(**{"price": 100.0, "sl_pct": 2, "qty": 3, **overrides})).body


def test_unset_the_signal_keeps_its_own_qty(settings, signal_body):
    assert settings.RISK_PER_TRADE_PCT is None
    assert bounce(signal_body)["qty"] == 3.0
    assert Position.objects.get().qty == Decimal("3")


def test_a_signal_risks_the_share_of_the_starting_capital_down_to_its_stop(risk_one_pct, signal_body):
    body = bounce(signal_body)
    assert body["risk_ok"] is True and body["qty"] == 50.0  # 1 % of 10 000 over 2 USDT a unit
    position = Position.objects.get()
    assert position.qty == Decimal("50") and position.orders.get().qty == Decimal("50")


def test_a_short_is_sized_by_the_distance_up_to_its_stop(risk_one_pct, signal_body):
    assert bounce(signal_body, side="SELL", sl_pct=4)["qty"] == 25.0  # stop at 104


def test_the_size_follows_the_equity_after_closed_trades(risk_one_pct, signal_body):
    closed_position(pnl="-2000", account_label="default")
    closed_position(pnl="500", account_label="other-epoch")  # another book: not this equity
    assert bounce(signal_body)["qty"] == 40.0  # 1 % of 8 000 over 2


def test_a_new_epoch_sizes_by_its_own_capital(risk_one_pct, signal_body):
    closed_position(pnl="-2000", account_label="default")
    call_command("new_epoch", "small", "--capital", "500", stdout=StringIO())
    assert bounce(signal_body)["qty"] == 2.5
    assert Position.objects.get(account_label="small").qty == Decimal("2.5")


def test_the_qty_is_rounded_down_so_the_risk_never_exceeds_the_share(risk_one_pct, signal_body):
    body = bounce(signal_body, price=30.0, sl_pct=10)  # 100 USDT over 3: 33.33…
    qty = Position.objects.get().qty
    assert body["qty"] == float(qty) and qty == Decimal("33.3333333333")
    assert qty * 3 <= Decimal("100")


def test_the_size_is_capped_by_the_per_position_notional(risk_one_pct, settings, signal_body):
    settings.MAX_SIZE_PER_POSITION_USDT = Decimal("1000")
    body = bounce(signal_body)
    assert body["risk_ok"] is True and body["qty"] == 10.0


def test_the_size_is_capped_by_the_exposure_left_and_refused_when_none_is_left(risk_one_pct, settings, signal_body):
    settings.MAX_TOTAL_EXPOSURE_USDT = Decimal("3000")
    open_position(entry="100", qty="25")  # 2 500 of the 3 000 already used
    assert bounce(signal_body)["qty"] == 5.0
    body = bounce(signal_body)  # nothing left: the exposure limit refuses with its own reason
    assert body["risk_ok"] is False and body["risk_reason"].startswith("max_total_exposure_exceeded")


def test_no_equity_refuses_the_signal_with_a_clear_reason(risk_one_pct, signal_body):
    closed_position(pnl="-10000", account_label="default")
    body = bounce(signal_body)
    assert body == {
        "received": True,
        "oms_enabled": True,
        "risk_ok": False,
        "risk_reason": "risk_sizing_no_equity (equity=0)",
    }
    assert Signal.objects.get().outcome == SignalOutcome.RISK_BLOCKED
    assert not Position.objects.filter(status="open").exists()


def test_a_request_sized_by_risk_without_a_stop_is_refused(risk_one_pct):
    request = PositionRequest(
        symbol="BTCUSDT",
        side="long",
        qty=Decimal("1"),
        entry_price=Decimal("100"),
        tp_price=None,
        sl_price=None,
        exchange="bitget",
        size_by_risk=True,
    )
    with pytest.raises(RiskLimitExceeded) as refused:
        position_open(request=request)
    assert refused.value.scope == "sizing" and refused.value.message.startswith("risk_sizing_needs_stop")
    assert not Position.objects.exists()


def test_an_explicit_order_keeps_its_qty(risk_one_pct, operator):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(operator)
    body = {"symbol": "BTCUSDT", "side": "long", "qty": 3, "entry_price": 100, "tp_price": 104.5, "sl_price": 98}
    response = client.post("/orders", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    assert Position.objects.get().qty == Decimal("3")


@pytest.fixture
def demo_exchange(settings):
    standin = StandIn("bitget").start()
    configure(settings, standin)
    yield standin
    standin.stop()
    reset_brokers()


def test_on_the_exchange_the_sized_qty_is_capped_by_the_live_notional_and_rounded_to_the_lot(
    risk_one_pct, demo_exchange, signal_body
):
    # 1 % of 10 000 over a 600 USDT stop distance is 0.1666… BTC (10 000 USDT): capped to
    # LIVE_MAX_NOTIONAL_USDT (100 USDT, 0.0016666… BTC), then rounded down to the 0.001 lot.
    body = bounce(signal_body, price=60000, sl_pct=1, tp_pct=2, qty=0.005)
    assert body["risk_ok"] is True, body
    position = Position.objects.get()
    assert position.qty == Decimal("0.001") and body["qty"] == 0.001
    assert demo_exchange.positions["BTCUSDT"].qty == Decimal("0.001")


def test_sizing_fits_the_strategys_own_exposure_limit_instead_of_being_refused(risk_one_pct, signal_body):
    from oms.services.operator_audit import Operator
    from oms.services.strategies import strategy_control_set

    strategy_control_set(
        strategy="bounce_ema10_strict",
        operator=Operator("olga", "console", reason="cap it"),
        max_exposure_usdt=Decimal("3000"),
    )
    open_position(strategy="bounce_ema10_strict", entry="100", qty="10")  # 1 000 of the 3 000 used
    body = bounce(signal_body)  # 50 units = 5 000 USDT by risk alone
    assert body["risk_ok"] is True and body["qty"] == 20.0  # what the strategy leaves free: 2 000 USDT
