"""Per-strategy control (issue #12 §5): a strategy's own switch and limits in the opening transaction."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oms.exceptions import RiskLimitExceeded
from oms.models import (
    OperatorAction,
    OperatorActionKind,
    OperatorSource,
    Position,
    PositionStatus,
    Signal,
    SignalOutcome,
    StrategyControl,
)
from oms.services.operator_audit import Operator
from oms.services.positions import PositionRequest, position_close_at_market, position_open
from oms.services.strategies import (
    StrategyControlInvalid,
    strategy_control_set,
    strategy_get,
    strategy_list,
)
from oms.services.sweep import auto_close_sweep
from oms.services.switch import oms_switch_set
from oms.tests.factories import closed_position, open_position
from pricing.quotes import PriceQuote

pytestmark = pytest.mark.django_db

BOUNCE = "bounce_ema10_strict"
OLGA = Operator(actor="olga", source=OperatorSource.CONSOLE, reason="testing")


def set_strategy(strategy: str = BOUNCE, **changes) -> StrategyControl:
    return strategy_control_set(strategy=strategy, operator=OLGA, **changes)


def post(client, body) -> dict:
    response = client.post("/signals/bounce", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def request_for(strategy: str = BOUNCE, *, symbol="BTCUSDT", price="100", qty="1") -> PositionRequest:
    return PositionRequest(
        symbol=symbol,
        side="long",
        qty=Decimal(qty),
        entry_price=Decimal(price),
        tp_price=Decimal(price) * Decimal("1.05"),
        sl_price=Decimal(price) * Decimal("0.95"),
        exchange="bitget",
        strategy=strategy,
    )


# --- The switch -------------------------------------------------------------------------------


def test_a_strategy_never_changed_opens_as_before(anon_client, signal_body):
    body = post(anon_client, signal_body())
    assert body["risk_ok"] is True and Position.objects.get().strategy == BOUNCE
    assert not StrategyControl.objects.exists()


def test_a_strategy_switched_off_refuses_its_signals_with_the_existing_keys(anon_client, signal_body):
    set_strategy(enabled=False)
    body = post(anon_client, signal_body())
    assert body == {
        "received": True,
        "oms_enabled": True,
        "risk_ok": False,
        "risk_reason": f"strategy_switched_off (strategy={BOUNCE})",
    }
    assert not Position.objects.exists()
    signal = Signal.objects.get()
    assert (signal.outcome, signal.reason, signal.position) == (
        SignalOutcome.RISK_BLOCKED,
        f"strategy_switched_off (strategy={BOUNCE})",
        None,
    )


def test_other_strategies_are_not_affected(anon_client, signal_body):
    set_strategy(enabled=False)
    body = post(anon_client, signal_body(strategy="breakout_v2"))
    assert body["risk_ok"] is True
    assert Position.objects.get().strategy == "breakout_v2"


def test_switching_a_strategy_back_on_takes_effect_for_the_next_signal(anon_client, signal_body):
    set_strategy(enabled=False)
    assert post(anon_client, signal_body())["risk_ok"] is False
    set_strategy(enabled=True)
    assert post(anon_client, signal_body())["risk_ok"] is True


def test_the_global_switch_off_still_answers_as_before_whatever_the_strategy(anon_client, signal_body):
    set_strategy(enabled=False)
    oms_switch_set(enabled=False, actor="olga", reason="maintenance")
    body = post(anon_client, signal_body())
    assert body == {
        "received": True,
        "oms_enabled": False,
        "risk_ok": False,
        "reason": "OMS switched off by olga: maintenance",
    }


def test_a_strategy_switched_off_is_refused_before_the_global_limits(anon_client, signal_body, settings):
    settings.MAX_OPEN_POSITIONS = 0
    set_strategy(enabled=False)
    assert post(anon_client, signal_body())["risk_reason"].startswith("strategy_switched_off")


def test_the_names_match_exactly(anon_client, signal_body):
    set_strategy(enabled=False)
    assert post(anon_client, signal_body(strategy=BOUNCE.upper()))["risk_ok"] is True


def test_a_manual_order_of_a_strategy_switched_off_is_refused_too(operator_client):
    set_strategy(enabled=False)
    response = operator_client.post(
        "/orders",
        {"symbol": "BTCUSDT", "side": "long", "qty": 1, "entry_price": 100, "strategy": BOUNCE},
        format="json",
    )
    assert response.status_code == 409
    assert response.json() == {"error": "risk_blocked", "detail": f"strategy_switched_off (strategy={BOUNCE})"}
    assert not Position.objects.exists()


def test_a_position_without_a_strategy_is_not_subject_to_any_strategy():
    set_strategy(enabled=False)
    opened = position_open(request=request_for(""))
    assert opened.position.strategy == ""


# --- Exits are never blocked ------------------------------------------------------------------


class OneQuote:
    name = "stub"

    def __init__(self, price: str) -> None:
        self.price = Decimal(price)

    def get_quotes(self, symbols):
        now = timezone.now()
        return {s: PriceQuote(symbol=s, ts=now, bid=self.price, ask=self.price, last=self.price, mark=self.price,
                              source="stub") for s in symbols}  # fmt: skip

    def get_quote(self, symbol):
        return self.get_quotes([symbol])[symbol]


def test_the_sweep_still_closes_positions_of_a_strategy_switched_off():
    position = open_position(strategy=BOUNCE, created_at=timezone.now() - timedelta(minutes=5))
    set_strategy(enabled=False, max_open_positions=0)
    result = auto_close_sweep(source=OneQuote("110"))
    position.refresh_from_db()
    assert [p.pk for p in result.closed] == [position.pk]
    assert (position.status, position.auto_close_reason) == (PositionStatus.CLOSED, "tp")


def test_a_manual_close_of_a_strategy_switched_off_still_works(monkeypatch):
    position = open_position(strategy=BOUNCE)
    set_strategy(enabled=False)
    monkeypatch.setattr("oms.services.positions.get_price_source", lambda: OneQuote("101"))
    result = position_close_at_market(position_id=position.pk)
    assert result.closed_now and result.position.status == PositionStatus.CLOSED


# --- Limits -----------------------------------------------------------------------------------


def test_max_open_positions_counts_only_this_strategys_open_positions(anon_client, signal_body):
    set_strategy(max_open_positions=2)
    open_position(strategy=BOUNCE)
    open_position(strategy="other")
    closed_position(pnl="1", strategy=BOUNCE)
    assert post(anon_client, signal_body())["risk_ok"] is True
    body = post(anon_client, signal_body())
    assert body["risk_reason"] == f"strategy_max_open_reached (strategy={BOUNCE}, count=2, limit=2)"
    assert post(anon_client, signal_body(strategy="other"))["risk_ok"] is True


def test_max_positions_per_day_counts_closed_ones_and_not_yesterdays(anon_client, signal_body):
    set_strategy(max_positions_per_day=2)
    now = timezone.now()
    yesterday = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(minutes=1)
    closed_position(pnl="1", strategy=BOUNCE, created_at=yesterday, closed_at=yesterday)
    closed_position(pnl="1", strategy=BOUNCE, created_at=now, closed_at=now)
    assert post(anon_client, signal_body())["risk_ok"] is True
    body = post(anon_client, signal_body())
    assert body["risk_reason"] == f"strategy_max_positions_per_day_reached (strategy={BOUNCE}, count=2, limit=2)"


def test_max_exposure_counts_this_strategys_open_notional(anon_client, signal_body):
    set_strategy(max_exposure_usdt=Decimal("250"))
    open_position(strategy=BOUNCE, entry="100", qty="1.5")
    open_position(strategy="other", entry="100", qty="10")
    assert post(anon_client, signal_body(price=100.0, qty=1))["risk_ok"] is True  # 250: at the limit
    body = post(anon_client, signal_body(price=100.0, qty=0.5))
    assert body["risk_reason"] == f"strategy_max_exposure_exceeded (strategy={BOUNCE}, exposure=300, limit=250)"


def test_global_limits_are_checked_before_the_strategys(anon_client, signal_body, settings):
    settings.MAX_OPEN_POSITIONS = 1
    set_strategy(max_open_positions=1)
    open_position(strategy=BOUNCE)
    assert post(anon_client, signal_body())["risk_reason"].startswith("max_total_open_reached")


def test_clearing_a_limit_lets_positions_open_again():
    set_strategy(max_open_positions=0)
    with pytest.raises(RiskLimitExceeded) as refused:
        position_open(request=request_for())
    assert refused.value.scope == "strategy_open"
    set_strategy(max_open_positions=None)
    assert position_open(request=request_for()).position.strategy == BOUNCE


def test_a_strategy_without_rows_costs_one_indexed_lookup_and_no_exposure_query():
    position_open(request=request_for())  # warm up: the switch row, the book figures of each strategy
    position_open(request=request_for(""))
    with CaptureQueriesContext(connection) as without_strategy:
        position_open(request=request_for(""))
    with CaptureQueriesContext(connection) as with_strategy:
        position_open(request=request_for())
    assert len(with_strategy) == len(without_strategy) + 1
    lookups = [q["sql"] for q in with_strategy if "oms_strategycontrol" in q["sql"]]
    assert len(lookups) == 1 and 'WHERE "strategy" = ' in lookups[0]  # by the unique column: one row at most


def test_a_strategy_switched_on_without_limits_reads_no_exposure():
    set_strategy(enabled=True)
    with CaptureQueriesContext(connection) as queries:
        position_open(request=request_for())
    assert len([q for q in queries if "oms_strategycontrol" in q["sql"]]) == 1
    assert not [q for q in queries if "SELECT" in q["sql"] and '"oms_position"."strategy" =' in q["sql"]]


def test_a_strategy_with_limits_reads_its_exposure_in_one_query():
    set_strategy(max_open_positions=5, max_positions_per_day=5, max_exposure_usdt=Decimal("1000"))
    with CaptureQueriesContext(connection) as queries:
        position_open(request=request_for())
    assert len([q for q in queries if "SELECT" in q["sql"] and '"oms_position"."strategy" =' in q["sql"]]) == 1


# --- The change itself ------------------------------------------------------------------------


def test_a_change_is_recorded_in_the_operator_audit_with_who_where_why_and_what():
    user_operator = Operator(actor="olga", source=OperatorSource.API, reason="too many losses today")
    strategy_control_set(strategy=BOUNCE, operator=user_operator, enabled=False, max_exposure_usdt=Decimal("500"))
    action = OperatorAction.objects.get()
    assert (action.action, action.actor, action.source, action.reason) == (
        OperatorActionKind.STRATEGY,
        "olga",
        OperatorSource.API,
        "too many losses today",
    )
    assert action.details == {"strategy": BOUNCE, "enabled": "on → off", "max_exposure_usdt": "none → 500"}
    row = StrategyControl.objects.get()
    assert (row.enabled, row.max_exposure_usdt, row.changed_by, row.reason) == (
        False,
        Decimal("500"),
        "olga",
        "too many losses today",
    )


def test_fields_not_given_stay_as_they_were():
    set_strategy(max_open_positions=3, max_positions_per_day=10)
    set_strategy(enabled=False)
    row = StrategyControl.objects.get()
    assert (row.enabled, row.max_open_positions, row.max_positions_per_day) == (False, 3, 10)
    latest = OperatorAction.objects.first()
    assert latest.details == {"strategy": BOUNCE, "enabled": "on → off"}


def test_a_change_to_the_same_state_is_still_recorded_as_unchanged():
    set_strategy(enabled=True)
    assert OperatorAction.objects.get().details == {"strategy": BOUNCE, "unchanged": True}


def test_a_change_needs_a_reason():
    with pytest.raises(StrategyControlInvalid, match="reason is required"):
        strategy_control_set(strategy=BOUNCE, operator=Operator("olga", OperatorSource.API, reason="  "), enabled=False)
    assert not StrategyControl.objects.exists() and not OperatorAction.objects.exists()


@pytest.mark.parametrize(
    ("strategy", "changes", "message"),
    [
        ("", {"enabled": False}, "name is required"),
        ("x" * 65, {"enabled": False}, "at most 64"),
        ("bad\nname", {"enabled": False}, "control characters"),
        (BOUNCE, {"enabled": "no"}, "true or false"),
        (BOUNCE, {"max_open_positions": -1}, "max_open_positions"),
        (BOUNCE, {"max_positions_per_day": 1.5}, "max_positions_per_day"),
        (BOUNCE, {"max_open_positions": True}, "max_open_positions"),
        (BOUNCE, {"max_exposure_usdt": Decimal("0")}, "greater than 0"),
        (BOUNCE, {"max_exposure_usdt": Decimal("NaN")}, "greater than 0"),
        (BOUNCE, {"max_exposure_usdt": Decimal("1e18")}, "max_exposure_usdt"),
        (BOUNCE, {"max_exposure_usdt": Decimal("1.00000000001")}, "10 decimal places"),
    ],
)
def test_bad_changes_are_refused_and_change_nothing(strategy, changes, message):
    with pytest.raises(StrategyControlInvalid, match=message):
        set_strategy(strategy, **changes)
    assert not StrategyControl.objects.exists() and not OperatorAction.objects.exists()


def test_names_are_stripped_as_signals_store_them(anon_client, signal_body):
    set_strategy(f"  {BOUNCE} ", enabled=False)
    assert StrategyControl.objects.get().strategy == BOUNCE
    assert post(anon_client, signal_body())["risk_ok"] is False


# --- Reads ------------------------------------------------------------------------------------


def test_the_list_holds_strategies_with_positions_or_rows_and_their_figures():
    open_position(strategy=BOUNCE, entry="100", qty="2")
    closed_position(pnl="1", strategy=BOUNCE)
    closed_position(pnl="1", strategy="old_one", created_at=timezone.now() - timedelta(days=3))
    open_position(strategy="")  # no strategy: not listed
    set_strategy("not_yet_sent", enabled=False)
    views = {view.strategy: view for view in strategy_list()}
    assert list(views) == [BOUNCE, "not_yet_sent", "old_one"]
    bounce = views[BOUNCE]
    assert (bounce.configured, bounce.enabled, bounce.open_positions, bounce.open_exposure_usdt) == (
        False,
        True,
        1,
        Decimal("200"),
    )
    assert (bounce.positions_today, bounce.total_positions) == (2, 2)
    assert (views["old_one"].positions_today, views["old_one"].total_positions) == (0, 1)
    assert (views["not_yet_sent"].configured, views["not_yet_sent"].enabled) == (True, False)


def test_one_strategy_never_seen_reads_as_on_with_no_limits():
    view = strategy_get("brand_new")
    assert view.as_dict() == {
        "strategy": "brand_new",
        "configured": False,
        "enabled": True,
        "max_open_positions": None,
        "max_positions_per_day": None,
        "max_exposure_usdt": None,
        "open_positions": 0,
        "open_exposure_usdt": 0.0,
        "positions_today": 0,
        "total_positions": 0,
        "changed_by": "",
        "changed_at": None,
        "reason": "",
    }


def test_a_strategy_change_alerts_the_operators_and_a_change_to_nothing_does_not():
    from oms.models import Notification

    operator = Operator("olga", "console", reason="too many losses today")
    strategy_control_set(strategy="bounce_a", operator=operator, enabled=False, max_open_positions=2)
    alert = Notification.objects.get(kind="strategy")
    assert alert.title == "LOMS strategy bounce_a changed"
    assert "enabled: on → off" in alert.body and "max_open_positions: none → 2" in alert.body
    assert "olga (console)" in alert.body and "too many losses today" in alert.body
    strategy_control_set(strategy="bounce_a", operator=operator, enabled=False)  # nothing changes
    assert Notification.objects.filter(kind="strategy").count() == 1
