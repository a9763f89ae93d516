"""The console's strategies page (issue #12 §5): who sees what, and changes through the same service."""

from decimal import Decimal

import pytest
from django.test import Client

from oms.models import OperatorAction, OperatorActionKind, OperatorSource, StrategyControl
from oms.services.operator_audit import Operator
from oms.services.strategies import strategy_control_set
from oms.tests.factories import open_position

pytestmark = pytest.mark.django_db

BOUNCE = "bounce_ema10_strict"
URL = "/console/strategies"


@pytest.fixture
def operator_web(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def viewer_web(viewer) -> Client:
    client = Client()
    client.force_login(viewer)
    return client


def test_the_page_needs_a_login():
    response = Client().get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


def test_the_page_lists_strategies_with_their_figures_and_is_in_the_nav(operator_web):
    open_position(strategy=BOUNCE, entry="100", qty="2")
    strategy_control_set(
        strategy="parked", operator=Operator("olga", OperatorSource.API, reason="paused for review"), enabled=False
    )
    page = operator_web.get(URL).content.decode()
    assert f'<tr data-strategy="{BOUNCE}">' in page and '<tr data-strategy="parked">' in page
    assert "200.00" in page and "paused for review" in page and "never changed" in page
    assert f'href="{URL}"' in operator_web.get("/").content.decode()


def test_an_operator_switches_a_strategy_off_with_a_reason(operator_web, operator):
    open_position(strategy=BOUNCE)
    response = operator_web.post(
        URL, {"action": "switch", "strategy": BOUNCE, "enabled": "off", "reason": "too many SL"}, follow=True
    )
    assert f"Strategy {BOUNCE} is OFF: its new positions are refused." in response.content.decode()
    row = StrategyControl.objects.get()
    assert (row.strategy, row.enabled, row.changed_by, row.reason) == (BOUNCE, False, operator.username, "too many SL")
    action = OperatorAction.objects.get()
    assert (action.action, action.source, action.user) == (
        OperatorActionKind.STRATEGY,
        OperatorSource.CONSOLE,
        operator,
    )


def test_the_switch_needs_a_reason(operator_web):
    response = operator_web.post(URL, {"action": "switch", "strategy": BOUNCE, "enabled": "off", "reason": "  "})
    assert response.status_code == 400
    assert "Give a reason" in response.content.decode()
    assert not StrategyControl.objects.exists()


def test_an_operator_sets_limits_for_a_strategy_not_seen_yet(operator_web):
    data = {
        "action": "set",
        "strategy": "next_gen",
        "enabled": "on",
        "max_open_positions": "2",
        "max_positions_per_day": "",
        "max_exposure_usdt": "300",
        "reason": "prepare",
    }
    response = operator_web.post(URL, data)
    assert response.status_code == 302
    row = StrategyControl.objects.get()
    assert (row.strategy, row.enabled, row.max_open_positions, row.max_positions_per_day, row.max_exposure_usdt) == (
        "next_gen",
        True,
        2,
        None,
        Decimal("300"),
    )


def test_the_limits_form_is_filled_with_the_current_values_to_edit(operator_web):
    strategy_control_set(
        strategy=BOUNCE, operator=Operator("olga", OperatorSource.API, reason="x"), max_exposure_usdt=Decimal("250")
    )
    page = operator_web.get(URL, {"edit": BOUNCE}).content.decode()
    assert f"Change {BOUNCE}" in page and 'value="250"' in page and f'value="{BOUNCE}"' in page


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_open_positions", "-1", "greater than or equal to 0"),
        ("max_exposure_usdt", "0", "greater than 0"),
        ("reason", "", "Give a reason"),
    ],
)
def test_bad_limits_are_shown_and_change_nothing(operator_web, field, value, message):
    data = {"action": "set", "strategy": BOUNCE, "enabled": "on", "reason": "x", field: value}
    response = operator_web.post(URL, data)
    assert response.status_code == 400 and message in response.content.decode()
    assert not StrategyControl.objects.exists()


def test_a_bad_name_is_refused_with_a_message(operator_web):
    response = operator_web.post(URL, {"action": "set", "strategy": "bad\x01name", "enabled": "off", "reason": "x"})
    assert response.status_code == 400 and "control characters" in response.content.decode()
    assert not StrategyControl.objects.exists()


def test_a_viewer_sees_the_page_without_controls_and_cannot_post(viewer_web):
    open_position(strategy=BOUNCE)
    page = viewer_web.get(URL).content.decode()
    assert BOUNCE in page and "Turn OFF" not in page and 'id="strategy-set-form"' not in page
    response = viewer_web.post(URL, {"action": "switch", "strategy": BOUNCE, "enabled": "off", "reason": "x"})
    assert response.status_code == 403
    assert not StrategyControl.objects.exists()


def test_the_form_refuses_a_post_without_the_csrf_token(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    response = client.post(URL, {"action": "switch", "strategy": BOUNCE, "enabled": "off", "reason": "x"})
    assert response.status_code == 403 and not StrategyControl.objects.exists()
