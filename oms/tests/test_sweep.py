"""The auto-close sweep against a real database and a stub price source."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from oms.models import AutoCloseMonitor, Order, OrderPurpose, Position, PositionStatus, SweepRun
from oms.services.health import health_report
from oms.services.positions import position_close
from oms.services.sweep import LeaseLost, auto_close_sweep
from oms.tests.factories import open_position
from pricing.quotes import PriceQuote, QuoteError

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


class StubSource:
    """Quotes from a dict: a price string, a QuoteError, or absent (symbol missing from the answer)."""

    name = "stub"

    def __init__(self, prices: dict, *, on_fetch=None, last_only: bool = False) -> None:
        self.prices = prices
        self.calls: list[list[str]] = []
        self.on_fetch = on_fetch
        self.last_only = last_only

    def quote(self, symbol: str, price: str) -> PriceQuote:
        value = D(price)
        other = None if self.last_only else value
        return PriceQuote(symbol=symbol, ts=NOW, bid=other, ask=other, last=value, mark=other, source=self.name)

    def get_quote(self, symbol: str) -> PriceQuote:
        raise AssertionError("the sweep must ask for all symbols in one get_quotes call")

    def get_quotes(self, symbols):
        symbols = list(symbols)
        self.calls.append(symbols)
        if self.on_fetch:
            self.on_fetch()
        answer = {}
        for symbol in symbols:
            value = self.prices.get(symbol)
            if isinstance(value, QuoteError):
                answer[symbol] = value
            elif value is not None:
                answer[symbol] = self.quote(symbol, value)
        return answer


def aged(age_sec: float = 60, **fields) -> Position:
    return open_position(created_at=NOW - timedelta(seconds=age_sec), **fields)


def sweep(prices: dict, **kwargs):
    source = kwargs.pop("source", None) or StubSource(prices)
    return auto_close_sweep(now=kwargs.pop("now", NOW), source=source, **kwargs), source


def exit_orders(position: Position) -> list[Order]:
    return list(position.orders.filter(purpose=OrderPurpose.EXIT))


def test_long_position_closes_at_take_profit_with_its_pnl_exit_order_and_monitor_figures():
    position = aged(side="long", qty="2", tp="104.5", sl="98.5")
    result, source = sweep({"BTCUSDT": "104.6"})
    position.refresh_from_db()
    assert (position.status, position.auto_close_reason, position.close_price, position.pnl) == (
        "closed",
        "tp",
        D("104.6"),
        D("9.2"),
    )
    assert position.closed_at == NOW
    [order] = exit_orders(position)
    assert (order.price, order.qty, order.status) == (D("104.6"), D("2"), "filled")
    assert [p.pk for p in result.closed] == [position.pk] and result.quote_requests == 1
    monitor = AutoCloseMonitor.load()
    assert (monitor.sweeps, monitor.positions_checked, monitor.positions_closed) == (1, 1, 1)
    assert (monitor.last_sweep_checked, monitor.last_sweep_closed, monitor.errors) == (1, 1, 0)
    assert monitor.last_sweep_at is not None and monitor.last_sweep_duration_ms > 0
    run = SweepRun.objects.get()
    assert (run.checked, run.closed, run.owner, run.error) == (1, 1, "", "")
    assert run.started_at <= run.finished_at


def test_short_position_closes_at_stop_loss():
    position = aged(side="short", tp="95.5", sl="101.5")
    sweep({"BTCUSDT": "101.7"})
    position.refresh_from_db()
    assert (position.status, position.auto_close_reason, position.close_price, position.pnl) == (
        "closed",
        "sl",
        D("101.7"),
        D("-1.7"),
    )


def test_price_between_the_levels_leaves_the_position_open():
    position = aged(side="long")
    result, _ = sweep({"BTCUSDT": "101"})
    position.refresh_from_db()
    assert position.status == "open" and result.checked == 1 and result.closed == []
    assert Order.objects.filter(purpose=OrderPurpose.EXIT).count() == 0


def test_fee_and_slippage_apply_to_auto_closes(settings):
    settings.PAPER_FEE_RATE = D("0.001")
    settings.PAPER_SLIPPAGE_BPS = D("10")
    position = aged(side="long", tp="104.5", fee="0.1")
    sweep({"BTCUSDT": "105"})
    position.refresh_from_db()
    # 105 slipped 10 bps against a long: 104.895; exit fee 0.104895; pnl 4.895 - 0.204895.
    assert (position.close_price, position.fee, position.pnl) == (D("104.895"), D("0.204895"), D("4.690105"))


@pytest.mark.parametrize(
    ("side", "prices", "levels", "close_price", "pnl"),
    [
        ("long", ["101", "102"], (D("101.49"), D("2")), "101.4", D("2.8")),
        ("short", ["99", "98"], (D("98.49"), D("2")), "98.6", D("2.8")),
    ],
)
def test_trailing_stop_moves_in_the_database_and_closes_with_reason_trailing_sl(side, prices, levels, close_price, pnl):
    sl = "98" if side == "long" else "102"
    position = aged(side=side, qty="2", tp=None, sl=sl, exit_strategy="tp_sl_trailing_v1")
    for price in prices:
        result, _ = sweep({"BTCUSDT": price})
        assert result.closed == []
    position.refresh_from_db()
    assert (position.dynamic_sl_price, position.max_favorable_move) == levels
    assert position.exit_meta["activated"] is True and position.exit_meta["best_price"] == prices[-1]
    result, _ = sweep({"BTCUSDT": "101.7" if side == "long" else "98.3"})  # above/below the stop: no update, no close
    assert result.closed == [] and result.levels_updated == 0
    sweep({"BTCUSDT": close_price})
    position.refresh_from_db()
    assert (position.status, position.auto_close_reason, position.close_price, position.pnl) == (
        "closed",
        "trailing_sl",
        D(close_price),
        pnl,
    )
    assert len(exit_orders(position)) == 1


@pytest.mark.parametrize(("side", "close_pnl"), [("long", D("0.75")), ("short", D("-0.75"))])
def test_max_holding_time_closes_with_reason_timeout_at_the_current_price(settings, side, close_pnl):
    settings.MAX_HOLDING_MIN = 30
    tp, sl = ("110", "90") if side == "long" else ("90", "110")
    old = aged(age_sec=30 * 60, side=side, tp=tp, sl=sl, qty="3")
    young = aged(age_sec=30 * 60 - 1, side=side, tp=tp, sl=sl)
    sweep({"BTCUSDT": "100.25"})
    old.refresh_from_db()
    young.refresh_from_db()
    assert (old.status, old.auto_close_reason) == ("closed", "timeout")
    assert (old.close_price, old.pnl) == (D("100.25"), close_pnl)
    assert young.status == "open"


def test_positions_younger_than_min_position_age_are_skipped(settings):
    settings.MIN_POSITION_AGE_SEC = 7
    young = aged(age_sec=6.5)
    ripe = aged(age_sec=7)
    result, source = sweep({"BTCUSDT": "200"})
    young.refresh_from_db()
    ripe.refresh_from_db()
    assert (young.status, ripe.status, result.checked) == ("open", "closed", 1)


def test_no_open_positions_means_no_quote_request():
    result, source = sweep({})
    assert (source.calls, result.checked, result.quote_requests) == ([], 0, 0)
    assert AutoCloseMonitor.load().sweeps == 1


def test_one_get_quotes_call_per_sweep_for_all_symbols_not_one_per_position():
    for i in range(30):
        aged(symbol=f"S{i % 3}USDT")
    result, source = sweep({"S0USDT": "100", "S1USDT": "100", "S2USDT": "100"})
    assert len(source.calls) == 1 and sorted(source.calls[0]) == ["S0USDT", "S1USDT", "S2USDT"]
    assert result.checked == 30


def test_bad_quotes_for_one_symbol_leave_its_positions_open_while_others_close():
    good = [aged(symbol="BTCUSDT") for _ in range(2)]
    errored = aged(symbol="ETHUSDT")
    missing = aged(symbol="SOLUSDT")
    result, _ = sweep({"BTCUSDT": "110", "ETHUSDT": QuoteError("ETHUSDT", "HTTP 502"), "SOLUSDT": None})
    assert {p.pk for p in result.closed} == {p.pk for p in good}
    assert Position.objects.get(pk=errored.pk).status == Position.objects.get(pk=missing.pk).status == "open"
    assert result.failed == {"ETHUSDT": "HTTP 502", "SOLUSDT": "no quote returned"}
    sweep({"BTCUSDT": "110", "ETHUSDT": QuoteError("ETHUSDT", "timeout"), "SOLUSDT": "100"})
    monitor = AutoCloseMonitor.load()
    assert monitor.quote_failures["ETHUSDT"]["count"] == 2
    assert monitor.quote_failures["ETHUSDT"]["last_error"] == "timeout"
    assert monitor.quote_failures["SOLUSDT"]["count"] == 1
    assert monitor.last_sweep_failed_symbols == ["ETHUSDT"]
    assert health_report()["auto_close"]["quote_failures"]["ETHUSDT"]["count"] == 2


def test_a_price_mode_the_quote_lacks_is_a_failed_quote_not_a_fallback(settings):
    settings.PRICE_MODE = "mark"
    position = aged()
    result, _ = sweep({}, source=StubSource({"BTCUSDT": "200"}, last_only=True))
    position.refresh_from_db()
    assert position.status == "open" and "mark" in result.failed["BTCUSDT"]


def test_a_price_source_that_raises_fails_every_quote_without_crashing_the_sweep():
    position = aged()

    def explode():
        raise RuntimeError("connection pool exploded")

    result, _ = sweep({}, source=StubSource({"BTCUSDT": "200"}, on_fetch=explode))
    position.refresh_from_db()
    assert position.status == "open" and result.error == ""
    assert "connection pool exploded" in result.failed["BTCUSDT"]


def test_manual_close_racing_the_sweep_books_exactly_one_close():
    position = aged(side="long", tp="104.5")

    def manual_close_lands_first():
        position_close(position=Position.objects.get(pk=position.pk), price=D("101"), reason="manual")

    result, _ = sweep({}, source=StubSource({"BTCUSDT": "105"}, on_fetch=manual_close_lands_first))
    position.refresh_from_db()
    assert result.closed == []
    assert (position.auto_close_reason, position.close_price, position.pnl) == ("manual", D("101"), D("1"))
    assert len(exit_orders(position)) == 1
    assert AutoCloseMonitor.load().positions_closed == 0


def test_an_exception_inside_a_sweep_is_recorded_and_nothing_is_half_written(monkeypatch):
    first, second = aged(symbol="BTCUSDT"), aged(symbol="ETHUSDT")
    calls = []

    def exit_order_then_crash(position):
        calls.append(position.pk)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("oms.services.closing.exit_order_for", exit_order_then_crash)
    result, _ = sweep({"BTCUSDT": "110", "ETHUSDT": "110"})
    assert result.error == "RuntimeError: disk on fire" and result.closed == []
    assert set(Position.objects.values_list("status", flat=True)) == {"open"}
    assert Order.objects.filter(purpose=OrderPurpose.EXIT).count() == 0
    monitor = AutoCloseMonitor.load()
    assert (monitor.errors, monitor.last_error, monitor.sweeps) == (1, "RuntimeError: disk on fire", 1)
    assert SweepRun.objects.get().error == "RuntimeError: disk on fire"
    monkeypatch.undo()
    result, _ = sweep({"BTCUSDT": "110", "ETHUSDT": "110"})
    assert {p.pk for p in result.closed} == {first.pk, second.pk}


def test_a_sweep_without_the_lease_writes_nothing():
    position = aged()
    AutoCloseMonitor.objects.update_or_create(
        pk=1, defaults={"lease_owner": "someone-else", "lease_expires_at": timezone.now() + timedelta(seconds=30)}
    )
    with pytest.raises(LeaseLost):
        sweep({"BTCUSDT": "110"}, lease_owner="me")
    position.refresh_from_db()
    assert position.status == PositionStatus.OPEN and AutoCloseMonitor.load().sweeps == 0
    assert not SweepRun.objects.exists()


def test_health_turns_degraded_when_the_last_sweep_is_older_than_the_stale_threshold(settings):
    settings.AUTO_CLOSE_STALE_SEC = 30
    sweep({})
    assert health_report()["status"] == "ok"
    AutoCloseMonitor.objects.filter(pk=1).update(last_sweep_at=timezone.now() - timedelta(seconds=31))
    report = health_report()
    assert report["status"] == "degraded" and report["auto_close"]["stale"] is True


def test_a_sweep_that_closes_changes_the_book_version_and_a_quiet_one_does_not():
    from oms.selectors import book_version

    aged(symbol="BTCUSDT", tp="104.5", sl="98.5")
    before = book_version()
    auto_close_sweep(now=NOW, source=StubSource({"BTCUSDT": "100"}))
    assert book_version() == before
    auto_close_sweep(now=NOW, source=StubSource({"BTCUSDT": "105"}))
    assert book_version() != before
