"""`GET /oms/strategies`, `GET|POST /oms/strategies/{strategy}` (issue #12 §5, docs/CONTRACT.md)."""

from decimal import Decimal

import pytest

from oms.models import OperatorAction, OperatorActionKind, OperatorSource, Position, StrategyControl
from oms.tests.factories import open_position

pytestmark = pytest.mark.django_db

BOUNCE = "bounce_ema10_strict"


def test_the_list_shows_each_strategy_with_its_switch_limits_and_figures(strict_api, viewer_client):
    open_position(strategy=BOUNCE, entry="100", qty="2")
    response = viewer_client.get("/oms/strategies")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    [row] = body["results"]
    assert row["strategy"] == BOUNCE and row["enabled"] is True and row["configured"] is False
    assert row["open_positions"] == 1 and row["open_exposure_usdt"] == 200.0 and row["max_exposure_usdt"] is None
    assert viewer_client.get("/oms/strategies/").status_code == 200


def test_reading_needs_a_login_outside_dev(strict_api, anon_client):
    assert anon_client.get("/oms/strategies").status_code in (401, 403)
    assert anon_client.get(f"/oms/strategies/{BOUNCE}").status_code in (401, 403)


def test_an_operator_switches_a_strategy_off_and_the_bot_is_refused(
    strict_api, operator_client, operator, bot_client, signal_body
):
    response = operator_client.post(
        f"/oms/strategies/{BOUNCE}", {"enabled": False, "reason": "drawdown too deep"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["strategy"], body["enabled"], body["configured"], body["changed_by"], body["reason"]) == (
        BOUNCE,
        False,
        True,
        operator.username,
        "drawdown too deep",
    )
    signal = bot_client.post("/signals/bounce", signal_body(), format="json").json()
    assert signal["risk_ok"] is False and signal["risk_reason"] == f"strategy_switched_off (strategy={BOUNCE})"
    assert not Position.objects.exists()
    action = OperatorAction.objects.get()
    assert (action.action, action.source, action.actor, action.user) == (
        OperatorActionKind.STRATEGY,
        OperatorSource.API,
        operator.username,
        operator,
    )


def test_limits_are_set_changed_and_cleared_with_null(strict_api, operator_client):
    url = f"/oms/strategies/{BOUNCE}/"
    body = operator_client.post(
        url, {"max_open_positions": 3, "max_exposure_usdt": 500.5, "reason": "cap it"}, format="json"
    ).json()
    assert (body["enabled"], body["max_open_positions"], body["max_positions_per_day"], body["max_exposure_usdt"]) == (
        True,
        3,
        None,
        500.5,
    )
    body = operator_client.post(url, {"max_open_positions": None, "reason": "uncap"}, format="json").json()
    assert (body["max_open_positions"], body["max_exposure_usdt"]) == (None, 500.5)
    assert StrategyControl.objects.get().max_exposure_usdt == Decimal("500.5")


def test_reading_one_strategy_never_seen_answers_on_with_no_limits(strict_api, viewer_client):
    body = viewer_client.get("/oms/strategies/brand_new").json()
    assert (body["strategy"], body["enabled"], body["configured"], body["total_positions"]) == (
        "brand_new",
        True,
        False,
        0,
    )
    assert not StrategyControl.objects.exists()


def test_a_name_with_spaces_and_slashes_is_reached_url_encoded(strict_api, operator_client):
    response = operator_client.post("/oms/strategies/mean%20rev%2Fv2", {"enabled": False, "reason": "x"}, format="json")
    assert response.status_code == 200 and response.json()["strategy"] == "mean rev/v2"
    assert operator_client.get("/oms/strategies/mean%20rev%2Fv2").json()["enabled"] is False


def test_a_viewer_and_the_bot_cannot_change_a_strategy(strict_api, viewer_client, bot_client):
    for client in (viewer_client, bot_client):
        response = client.post(f"/oms/strategies/{BOUNCE}", {"enabled": False, "reason": "x"}, format="json")
        assert response.status_code == 403
    assert not StrategyControl.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"enabled": False}, "reason"),
        ({"enabled": False, "reason": ""}, "reason"),
        ({"enabled": "false", "reason": "x"}, "enabled"),
        ({"max_open_positions": -1, "reason": "x"}, "max_open_positions"),
        ({"max_open_positions": "3", "reason": "x"}, "max_open_positions"),
        ({"max_positions_per_day": 2.5, "reason": "x"}, "max_positions_per_day"),
        ({"max_exposure_usdt": 0, "reason": "x"}, "max_exposure_usdt"),
        ({"max_exposure_usdt": "500", "reason": "x"}, "max_exposure_usdt"),
    ],
)
def test_bad_bodies_are_a_400_naming_the_field(strict_api, operator_client, body, field):
    response = operator_client.post(f"/oms/strategies/{BOUNCE}", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not StrategyControl.objects.exists()


def test_a_name_too_long_is_a_clear_400(strict_api, operator_client):
    response = operator_client.post("/oms/strategies/" + "x" * 65, {"enabled": False, "reason": "x"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": "invalid", "detail": "a strategy name has at most 64 characters"}
    assert operator_client.get("/oms/strategies/" + "x" * 65).status_code == 400
