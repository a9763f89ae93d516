"""Automatic trips: loss limits turn the OMS switch off, and only a person turns it back on."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from oms.models import OmsControl, OmsSwitchChange, Order, SwitchSource
from oms.services.closing import CloseInstruction, close_positions
from oms.services.positions import position_close
from oms.services.switch import oms_switch_set
from oms.services.trips import (
    TripFigures,
    TripLimits,
    current_drawdown,
    daily_loss,
    trip_reason,
    trips_check,
    trips_check_on_commit,
)
from oms.tests.factories import closed_position, open_position


@pytest.fixture
def no_trip_limits(settings):
    settings.DAILY_LOSS_LIMIT_USDT = None
    settings.MAX_DRAWDOWN_USDT = None
    settings.MAX_CONSECUTIVE_SL = None
    return settings


def minutes_ago(n: int):
    return timezone.now() - timedelta(minutes=n)


@pytest.mark.django_db
def test_daily_loss_reaching_the_limit_turns_the_switch_off(no_trip_limits):
    no_trip_limits.DAILY_LOSS_LIMIT_USDT = Decimal("10")
    noon = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)  # all closes on one UTC day
    closed_position(pnl="-6", reason="sl", closed_at=noon - timedelta(minutes=30))
    closed_position(pnl="2", reason="tp", closed_at=noon - timedelta(minutes=20))
    assert trips_check(noon) is None
    closed_position(pnl="-6", reason="sl", closed_at=noon - timedelta(minutes=10))

    reason = trips_check(noon)

    assert reason is not None and "daily loss 10.0000" in reason and "DAILY_LOSS_LIMIT_USDT" in reason
    control = OmsControl.load()
    assert control.enabled is False
    change = OmsSwitchChange.objects.get()
    assert (change.enabled, change.source, change.changed_by) == (False, SwitchSource.AUTO, "auto-trip")
    assert change.reason.startswith("automatic trip: daily loss")


@pytest.mark.django_db
def test_losses_of_previous_days_do_not_count_towards_the_daily_loss(no_trip_limits):
    no_trip_limits.DAILY_LOSS_LIMIT_USDT = Decimal("10")
    now = timezone.now().replace(hour=12)
    closed_position(pnl="-50", reason="sl", closed_at=now - timedelta(days=1))
    closed_position(pnl="-5", reason="sl", closed_at=now - timedelta(hours=1))
    assert trips_check(now=now) is None
    assert OmsControl.load().enabled is True


@pytest.mark.django_db
def test_drawdown_from_peak_equity_reaching_the_limit_turns_the_switch_off(no_trip_limits):
    no_trip_limits.MAX_DRAWDOWN_USDT = Decimal("8")
    for minutes, pnl in ((50, "5"), (40, "5"), (30, "-4"), (20, "3")):  # peak 10 at minute 40
        closed_position(pnl=pnl, closed_at=minutes_ago(minutes), reason="tp" if pnl[0] != "-" else "sl")
    assert current_drawdown(since=None) == Decimal("1")
    assert trips_check() is None
    closed_position(pnl="-7", reason="sl", closed_at=minutes_ago(10))

    assert current_drawdown(since=None) == Decimal("8")
    reason = trips_check()

    assert reason is not None and "drawdown 8.0000" in reason and "MAX_DRAWDOWN_USDT" in reason
    assert OmsControl.load().enabled is False


@pytest.mark.django_db
def test_drawdown_counts_from_the_starting_zero_when_equity_never_rose():
    closed_position(pnl="-3", reason="sl", closed_at=minutes_ago(20))
    closed_position(pnl="-2", reason="sl", closed_at=minutes_ago(10))
    assert current_drawdown(since=None) == Decimal("5")


@pytest.mark.django_db
def test_consecutive_stop_losses_reaching_the_limit_turn_the_switch_off(no_trip_limits):
    no_trip_limits.MAX_CONSECUTIVE_SL = 3
    closed_position(pnl="-1", reason="sl", closed_at=minutes_ago(50))
    closed_position(pnl="-1", reason="sl", closed_at=minutes_ago(40))
    closed_position(pnl="4", reason="tp", closed_at=minutes_ago(30))  # breaks the streak
    closed_position(pnl="-1", reason="sl", closed_at=minutes_ago(20))
    closed_position(pnl="-1", reason="sl", closed_at=minutes_ago(10))
    assert trips_check() is None
    closed_position(pnl="-1", reason="sl", closed_at=minutes_ago(5))

    reason = trips_check()

    assert reason is not None and reason.startswith("3 consecutive stop-losses") and "MAX_CONSECUTIVE_SL" in reason
    assert OmsControl.load().enabled is False


@pytest.mark.django_db
def test_a_manual_close_is_not_a_stop_loss(no_trip_limits):
    no_trip_limits.MAX_CONSECUTIVE_SL = 2
    closed_position(pnl="-1", reason="sl", closed_at=minutes_ago(20))
    closed_position(pnl="-1", reason="manual", closed_at=minutes_ago(10))
    assert trips_check() is None


@pytest.mark.django_db
def test_nothing_trips_when_no_limit_is_configured(no_trip_limits):
    for minutes in range(1, 20):
        closed_position(pnl="-100", reason="sl", closed_at=minutes_ago(minutes))
    assert trips_check() is None
    assert OmsControl.load().enabled is True
    assert not OmsSwitchChange.objects.exists()


@pytest.mark.django_db
def test_a_trip_is_recorded_once_and_never_turns_the_switch_on(no_trip_limits):
    no_trip_limits.MAX_CONSECUTIVE_SL = 1
    closed_position(pnl="-1", reason="sl", closed_at=minutes_ago(10))
    assert trips_check() is not None
    assert trips_check() is None  # already off: nothing more to record
    assert OmsSwitchChange.objects.count() == 1
    assert OmsControl.load().enabled is False


@pytest.mark.django_db
def test_after_a_person_re_arms_only_newer_trades_count(no_trip_limits):
    no_trip_limits.MAX_CONSECUTIVE_SL = 2
    no_trip_limits.DAILY_LOSS_LIMIT_USDT = Decimal("5")
    closed_position(pnl="-3", reason="sl", closed_at=minutes_ago(30))
    closed_position(pnl="-3", reason="sl", closed_at=minutes_ago(20))
    assert trips_check() is not None
    oms_switch_set(enabled=True, actor="olga", reason="checked the bot, resume", source=SwitchSource.DASHBOARD)

    assert trips_check() is None  # the old losses were accepted by re-arming
    closed_position(pnl="-1", reason="sl", closed_at=timezone.now() + timedelta(seconds=1))
    assert trips_check() is None
    closed_position(pnl="-1", reason="sl", closed_at=timezone.now() + timedelta(seconds=2))
    assert "consecutive stop-losses" in trips_check()


def test_trip_reason_names_the_first_limit_reached():
    limits = TripLimits(daily_loss=Decimal("100"), max_drawdown=Decimal("50"), max_consecutive_sl=4)
    calm = TripFigures(armed_at=None, daily_loss=Decimal("99"), drawdown=Decimal("49"), consecutive_sl=3)
    assert trip_reason(calm, limits) is None
    assert "MAX_DRAWDOWN_USDT" in trip_reason(TripFigures(None, Decimal("0"), Decimal("50"), 0), limits)
    assert "MAX_CONSECUTIVE_SL" in trip_reason(TripFigures(None, Decimal("0"), Decimal("0"), 4), limits)
    assert "DAILY_LOSS_LIMIT_USDT" in trip_reason(TripFigures(None, Decimal("100"), Decimal("60"), 9), limits)


@pytest.mark.django_db
def test_closing_a_position_runs_the_trip_check_after_commit(no_trip_limits, django_capture_on_commit_callbacks):
    no_trip_limits.MAX_CONSECUTIVE_SL = 1
    position = open_position(entry="100", sl="98.5")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        position_close(position=position, price=Decimal("98.5"), reason="sl")

    assert len(callbacks) == 2  # the close's log lines, then the trip check
    assert OmsControl.load().enabled is False
    assert OmsSwitchChange.objects.get().source == SwitchSource.AUTO


@pytest.fixture
def trip_checks(monkeypatch):
    """Count the trip checks actually run (the real check still runs)."""
    from oms.services import trips

    calls = []
    real = trips.trips_check

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(trips, "trips_check", counted)
    return calls


@pytest.mark.django_db
def test_many_closes_in_one_transaction_check_the_trips_once(
    no_trip_limits, django_capture_on_commit_callbacks, trip_checks
):
    no_trip_limits.MAX_CONSECUTIVE_SL = 100
    positions = [open_position() for _ in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        for position in positions:
            position_close(position=position, price=Decimal("99"), reason="sl")
        trips_check_on_commit()
    assert len(trip_checks) == 1


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_close_does_not_stop_the_next_commit_checking_the_trips(no_trip_limits, trip_checks):
    from django.db import transaction

    no_trip_limits.MAX_CONSECUTIVE_SL = 1
    first, second = open_position(entry="100", sl="98.5"), open_position(entry="100", sl="98.5")
    with pytest.raises(RuntimeError), transaction.atomic():
        position_close(position=first, price=Decimal("98"), reason="sl")
        raise RuntimeError("the transaction of the first close fails")
    assert trip_checks == [] and OmsControl.load().enabled is True

    with transaction.atomic():
        position_close(position=second, price=Decimal("98"), reason="sl")
        assert trip_checks == []  # not before the commit
    assert len(trip_checks) == 1
    assert OmsControl.load().enabled is False


def test_the_on_commit_check_uses_no_private_django_internals():
    import inspect

    from oms.services import trips

    assert "run_on_commit" not in inspect.getsource(trips)


@pytest.mark.django_db
def test_a_failing_trip_check_does_not_fail_the_close(no_trip_limits, django_capture_on_commit_callbacks, monkeypatch):
    no_trip_limits.MAX_CONSECUTIVE_SL = 1

    def broken(*args, **kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr("oms.services.trips.trips_check", broken)
    position = open_position()
    with django_capture_on_commit_callbacks(execute=True):
        result = position_close(position=position, price=Decimal("98"), reason="sl")
    assert result.closed_now is True
    assert OmsControl.load().enabled is True


class FixedPrices:
    name = "fixed"

    def __init__(self, price: str) -> None:
        self.price = Decimal(price)

    def get_quote(self, symbol):
        from pricing.quotes import PriceQuote

        return PriceQuote(
            symbol=symbol,
            ts=timezone.now(),
            bid=self.price,
            ask=self.price,
            last=self.price,
            mark=self.price,
            source=self.name,
        )

    def get_quotes(self, symbols):
        return {symbol: self.get_quote(symbol) for symbol in symbols}


@pytest.mark.django_db
def test_a_sweep_closing_at_the_stop_loss_trips_the_switch(no_trip_limits, django_capture_on_commit_callbacks):
    from oms.services.sweep import auto_close_sweep

    no_trip_limits.MAX_CONSECUTIVE_SL = 1
    no_trip_limits.MIN_POSITION_AGE_SEC = 0
    position = open_position(entry="100", sl="98.5", tp="104.5", created_at=minutes_ago(5))

    with django_capture_on_commit_callbacks(execute=True):
        result = auto_close_sweep(source=FixedPrices("98"))

    assert [p.pk for p in result.closed] == [position.pk]
    assert OmsControl.load().enabled is False
    assert OmsSwitchChange.objects.get().source == SwitchSource.AUTO


@pytest.fixture
def paper_exits(no_trip_limits):
    no_trip_limits.PAPER_FEE_RATE, no_trip_limits.PAPER_SLIPPAGE_BPS = Decimal("0"), Decimal("0")
    return no_trip_limits


@pytest.mark.django_db
def test_a_losing_partial_exit_counts_towards_the_daily_loss_while_the_position_stays_open(no_trip_limits):
    no_trip_limits.PAPER_FEE_RATE, no_trip_limits.PAPER_SLIPPAGE_BPS = Decimal("0.001"), Decimal("0")
    no_trip_limits.DAILY_LOSS_LIMIT_USDT = Decimal("10")
    position = open_position(entry="100", qty="4", sl="80")
    closed_position(pnl="-3", reason="sl", closed_at=minutes_ago(5))
    result = close_positions([CloseInstruction(position.pk, Decimal("96"), "manual", fraction=Decimal("0.5"))])

    assert result.partially_closed and OmsControl.load().enabled  # -3, then -8 - 0.192 of fee: -11.192 ≥ 10
    exit_order = Order.objects.get(position=position, purpose="exit")
    assert exit_order.partial_exit_pnl == Decimal("-8.192")
    assert trips_check() is not None and "daily loss 11.1920" in OmsSwitchChange.objects.latest("id").reason
    assert OmsControl.load().enabled is False


@pytest.mark.django_db(transaction=True)
def test_a_partial_exit_checks_the_trips_once_it_commits(paper_exits):
    paper_exits.DAILY_LOSS_LIMIT_USDT = Decimal("5")
    oms_switch_set(enabled=True, actor="op", reason="armed")
    position = open_position(entry="100", qty="2", sl="80")

    close_positions([CloseInstruction(position.pk, Decimal("94"), "manual", fraction=Decimal("0.5"))])  # -6

    assert OmsControl.load().enabled is False
    assert "daily loss 6.0000" in OmsSwitchChange.objects.latest("id").reason


@pytest.mark.django_db
def test_a_trade_closed_after_partial_exits_counts_its_whole_pnl_once(paper_exits):
    position = open_position(entry="100", qty="2", sl="80")
    close_positions([CloseInstruction(position.pk, Decimal("97"), "manual", fraction=Decimal("0.5"))])  # -3
    assert daily_loss(now=timezone.now(), since=None) == Decimal("3")
    close_positions([CloseInstruction(position.pk, Decimal("102"), "manual")])  # +2 on the rest

    position.refresh_from_db()
    assert position.pnl == Decimal("-1")
    assert daily_loss(now=timezone.now(), since=None) == Decimal("1")


@pytest.mark.django_db
def test_partial_exits_before_today_or_before_the_switch_was_armed_do_not_count(paper_exits):
    position = open_position(entry="100", qty="4", sl="80")
    close_positions([CloseInstruction(position.pk, Decimal("95"), "manual", fraction=Decimal("0.25"))])  # -5
    Order.objects.filter(position=position, purpose="exit").update(created_at=timezone.now() - timedelta(days=1))
    close_positions([CloseInstruction(position.pk, Decimal("98"), "manual", qty=Decimal("1"))])  # -2, today
    now = timezone.now()
    assert daily_loss(now=now, since=None) == Decimal("2")
    assert daily_loss(now=now, since=now) == Decimal("0")  # the switch armed after both


@pytest.mark.django_db
def test_rearming_after_a_partial_exit_trip_is_a_fresh_start(paper_exits):
    paper_exits.DAILY_LOSS_LIMIT_USDT = Decimal("10")
    oms_switch_set(enabled=True, actor="op", reason="armed")
    position = open_position(entry="100", qty="2", sl="80")
    close_positions([CloseInstruction(position.pk, Decimal("88"), "manual", fraction=Decimal("0.5"))])  # -12
    assert trips_check() is not None and OmsControl.load().enabled is False
    oms_switch_set(enabled=True, actor="op", reason="re-armed: fresh start")
    close_positions([CloseInstruction(position.pk, Decimal("100"), "manual")])  # 0 on the rest: the trade is -12

    assert trips_check() is None
    assert OmsControl.load().enabled is True


@pytest.mark.django_db
def test_a_partial_exit_of_yesterday_is_not_counted_again_when_the_trade_closes_today(paper_exits):
    noon = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    yesterday = noon - timedelta(days=1)
    position = open_position(entry="100", qty="2", sl="80", created_at=yesterday - timedelta(hours=1))
    close_positions([CloseInstruction(position.pk, Decimal("88"), "manual", fraction=Decimal("0.5"))], now=yesterday)
    assert daily_loss(now=yesterday, since=None) == Decimal("12")
    close_positions([CloseInstruction(position.pk, Decimal("97"), "manual")], now=noon)  # -3 today

    assert daily_loss(now=noon, since=None) == Decimal("3")


@pytest.mark.django_db
def test_a_partial_exit_profit_before_arming_does_not_hide_a_loss_after(paper_exits):
    noon = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    position = open_position(entry="100", qty="2", sl="80", created_at=noon - timedelta(hours=3))
    before_arming = noon - timedelta(hours=2)
    close_positions(
        [CloseInstruction(position.pk, Decimal("112"), "manual", fraction=Decimal("0.5"))], now=before_arming
    )
    close_positions([CloseInstruction(position.pk, Decimal("90"), "manual")], now=noon)  # -10 after arming

    assert daily_loss(now=noon, since=noon - timedelta(hours=1)) == Decimal("10")


@pytest.mark.django_db
def test_the_daily_loss_is_exact_where_the_database_sums_decimals_as_floats(no_trip_limits):
    for _ in range(100):
        closed_position(pnl="-0.1", reason="sl")
    open_one = open_position()
    Order.objects.bulk_create(
        Order(position=open_one, exchange="bitget", symbol="BTCUSDT", side="long", qty=1, partial_exit_pnl="-0.1")
        for _ in range(100)
    )
    assert daily_loss(now=timezone.now(), since=None) == Decimal("20")


@pytest.mark.django_db
def test_a_losing_partial_exit_of_an_open_position_counts_in_the_drawdown_once(paper_exits):
    paper_exits.MAX_DRAWDOWN_USDT = Decimal("8")
    closed_position(pnl="5", reason="tp", closed_at=minutes_ago(30))  # the peak: 5
    position = open_position(entry="100", qty="2", sl="80")
    close_positions([CloseInstruction(position.pk, Decimal("94"), "manual", fraction=Decimal("0.5"))])  # -6
    assert current_drawdown(since=None) == Decimal("6")
    assert trips_check() is None

    close_positions([CloseInstruction(position.pk, Decimal("96"), "manual", qty=Decimal("0.5"))])  # -2 more
    assert current_drawdown(since=None) == Decimal("8")
    assert "drawdown 8.0000" in trips_check()

    close_positions([CloseInstruction(position.pk, Decimal("100"), "manual")])  # the rest at 0: the trade is -8
    assert current_drawdown(since=None) == Decimal("8")
    assert current_drawdown(since=minutes_ago(60 * 24)) == Decimal("8")
