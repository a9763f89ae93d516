"""Funding on open paper positions when prices come from an exchange's perpetuals (issue #12 §8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
import responses
from django.db import connection
from django_q.models import Schedule
from responses import matchers

from oms.models import Notification, Position, PositionFunding
from oms.pnl import funding_payment
from oms.services.closing import CloseInstruction, close_positions
from oms.services.funding import funding_run, position_funding_book
from oms.tasks import paper_funding
from oms.tests.factories import open_position
from pricing.funding import FundingEvent
from pricing.sources import reset_price_source_cache
from pricing.tests.conftest import recorded, stamped_now, with_symbols

BYBIT = "https://bybit.test"
TICKERS = f"{BYBIT}/v5/market/tickers"
HISTORY = f"{BYBIT}/v5/market/funding/history"
MARK = D("104816.87")  # markPrice of the recorded BTCUSDT ticker
T1, T2, T3 = (
    datetime(2025, 6, 18, 16, tzinfo=UTC),
    datetime(2025, 6, 19, 0, tzinfo=UTC),
    datetime(2025, 6, 19, 8, tzinfo=UTC),
)
R1, R2, R3 = D("0.00005217"), D("-0.00002731"), D("0.0001")  # the recorded settled rates
BEFORE_ALL = T1 - timedelta(hours=1)


# --- the payment rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "rate", "amount"),
    [
        ("long", D("0.0001"), D("1.0")),  # a long pays at a positive rate
        ("short", D("0.0001"), D("-1.0")),  # a short receives it
        ("long", D("-0.0001"), D("-1.0")),  # a long receives at a negative rate
        ("short", D("-0.0001"), D("1.0")),  # a short pays it
        ("long", D("0"), D("0")),
        ("short", D("0"), D("0")),
    ],
)
def test_the_payment_is_notional_times_rate_paid_by_the_side_the_rate_is_against(side, rate, amount):
    assert funding_payment(side=side, qty=D("0.5"), price=D("20000"), rate=rate) == amount


# --- the run against recorded Bybit answers ---------------------------------------------------------


@pytest.fixture
def bybit_prices(settings):
    settings.PRICE_SOURCE, settings.PRICE_EXCHANGE, settings.BYBIT_CATEGORY = "exchange", "bybit", "linear"
    settings.BYBIT_BASE_URL = BYBIT
    settings.PAPER_FUNDING = True
    reset_price_source_cache()
    yield
    reset_price_source_cache()


@pytest.fixture
def http():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def history(*times: datetime) -> dict:
    """The recorded Bybit funding history, keeping only the given funding times."""
    body = recorded("bybit_linear_funding_history_BTCUSDT")
    keep = {str(int(t.timestamp() * 1000)) for t in times}
    body["result"]["list"] = [row for row in body["result"]["list"] if row["fundingRateTimestamp"] in keep]
    return body


def serve(http, *, symbols=("BTCUSDT",), funding: dict | None = None) -> None:
    """Tickers for `symbols` now, and the funding history of BTCUSDT (all three recorded times by default)."""
    ticker = stamped_now(recorded("bybit_linear_tickers_BTCUSDT"))
    http.get(TICKERS, json=with_symbols(ticker, list(symbols)) if len(symbols) > 1 else ticker)
    http.get(
        HISTORY,
        json=funding or history(T1, T2, T3),
        match=[matchers.query_param_matcher({"category": "linear", "symbol": "BTCUSDT", "limit": "100"})],
    )


def booked(position: Position) -> list[tuple[datetime, D, D]]:
    return list(position.fundings.values_list("funding_time", "rate", "amount"))


@pytest.mark.django_db
def test_each_settled_funding_time_is_booked_on_open_longs_and_shorts(bybit_prices, http):
    serve(http)
    long = open_position(side="long", qty="0.2", created_at=BEFORE_ALL, fee="1.5")
    short = open_position(side="short", qty="0.1", created_at=BEFORE_ALL)

    result = funding_run()

    assert (result.state, result.booked, result.failed) == ("ok", 6, {})
    assert booked(long) == [
        (T1, R1, (D("0.2") * MARK * R1).quantize(D("1e-10"))),
        (T2, R2, (D("0.2") * MARK * R2).quantize(D("1e-10"))),
        (T3, R3, (D("0.2") * MARK * R3).quantize(D("1e-10"))),
    ]
    assert [amount for _, _, amount in booked(short)] == [
        -(D("0.1") * MARK * r).quantize(D("1e-10")) for r in (R1, R2, R3)
    ]
    long.refresh_from_db()
    paid = sum(amount for _, _, amount in booked(long))
    assert long.funding == paid and long.fee == D("1.5") + paid
    assert PositionFunding.objects.filter(position=long, funding_time=T3).get().price == MARK


@pytest.mark.django_db
def test_running_twice_charges_each_funding_time_once(bybit_prices, http):
    serve(http)
    position = open_position(created_at=BEFORE_ALL)
    funding_run()
    position.refresh_from_db()
    fee_after_first = position.fee

    second = funding_run()

    position.refresh_from_db()
    assert second.booked == 0
    assert position.fee == fee_after_first
    assert position.fundings.count() == 3


@pytest.mark.django_db
def test_only_funding_times_after_the_position_opened_are_booked(bybit_prices, http):
    serve(http)
    position = open_position(created_at=T2 + timedelta(minutes=1))

    funding_run()

    assert [t for t, _, _ in booked(position)] == [T3]


@pytest.mark.django_db
def test_a_position_closed_before_the_run_is_not_charged(bybit_prices, http):
    serve(http)
    position = open_position(created_at=BEFORE_ALL)
    close_positions([CloseInstruction(position_id=position.pk, price=D("100"), reason="manual")])
    position.refresh_from_db()
    fee, pnl = position.fee, position.pnl

    result = funding_run()

    position.refresh_from_db()
    assert result.booked == 0
    assert (position.fee, position.pnl, position.fundings.count()) == (fee, pnl, 0)


@pytest.mark.django_db
def test_booking_on_a_position_closed_meanwhile_books_nothing():
    position = open_position(created_at=BEFORE_ALL)
    close_positions([CloseInstruction(position_id=position.pk, price=D("100"), reason="manual")])

    payment = position_funding_book(position_id=position.pk, event=FundingEvent("BTCUSDT", T1, R1), price=MARK)

    assert payment is None
    assert not PositionFunding.objects.exists()


@pytest.mark.django_db
def test_the_close_books_a_pnl_net_of_the_funding_paid(bybit_prices, http, settings):
    settings.PAPER_FEE_RATE, settings.PAPER_SLIPPAGE_BPS = D("0"), D("0")
    serve(http)
    position = open_position(side="long", qty="1", entry="100", created_at=BEFORE_ALL)
    funding_run()
    position.refresh_from_db()

    close_positions([CloseInstruction(position_id=position.pk, price=D("110"), reason="manual")])

    position.refresh_from_db()
    assert position.funding != 0
    assert position.pnl == D("10") - position.funding


@pytest.mark.django_db
def test_exchange_positions_are_never_charged_by_paper(bybit_prices, http):
    serve(http)
    demo = open_position(created_at=BEFORE_ALL, broker_mode="demo")

    result = funding_run()

    assert result.booked == 0 and demo.fundings.count() == 0
    assert len(http.calls) == 0  # no open paper position: not even a public request


@pytest.mark.django_db
def test_funding_is_off_for_the_simulator_and_sends_no_request(settings, http):
    settings.PRICE_SOURCE = "simulator"
    position = open_position(created_at=BEFORE_ALL)

    result = funding_run()

    assert result.as_dict() == {
        "state": "off",
        "reason": "no funding with PRICE_SOURCE=simulator / PRICE_EXCHANGE=dummy",
    }
    assert len(http.calls) == 0
    assert position.fundings.count() == 0


@pytest.mark.django_db
def test_funding_can_be_turned_off(bybit_prices, settings, http):
    settings.PAPER_FUNDING = False
    open_position(created_at=BEFORE_ALL)

    assert funding_run().state == "off"
    assert len(http.calls) == 0


@pytest.mark.django_db
def test_a_run_catches_up_the_funding_times_missed_while_nothing_ran(bybit_prices, http):
    position = open_position(side="long", qty="0.2", created_at=BEFORE_ALL)
    serve(http, funding=history(T1))
    funding_run()
    assert [t for t, _, _ in booked(position)] == [T1]
    http.reset()

    serve(http, funding=history(T1, T2, T3))  # the worker was down through T2 and T3
    result = funding_run()

    assert result.booked == 2
    assert [t for t, _, _ in booked(position)] == [T1, T2, T3]
    position.refresh_from_db()
    assert position.fee == position.funding == sum(amount for _, _, amount in booked(position))


@pytest.mark.django_db
def test_one_failing_symbol_never_stops_the_others_and_is_reported(bybit_prices, http):
    serve(http, symbols=("BTCUSDT", "ETHUSDT"))
    http.get(
        HISTORY,
        json={"retCode": 10001, "retMsg": "params error", "result": {}, "time": 1750332210415},
        match=[matchers.query_param_matcher({"category": "linear", "symbol": "ETHUSDT", "limit": "100"})],
    )
    btc = open_position(symbol="BTCUSDT", created_at=BEFORE_ALL)
    eth = open_position(symbol="ETHUSDT", created_at=BEFORE_ALL)

    result = funding_run()

    assert btc.fundings.count() == 3 and eth.fundings.count() == 0
    assert list(result.failed) == ["ETHUSDT"] and "retCode 10001" in result.failed["ETHUSDT"]
    alert = Notification.objects.get(kind="funding")
    assert "ETHUSDT" in alert.body


@pytest.mark.django_db
def test_a_symbol_without_a_mark_price_waits_for_the_next_run(bybit_prices, http):
    ticker = stamped_now(recorded("bybit_linear_tickers_BTCUSDT"))
    del ticker["result"]["list"][0]["markPrice"]
    http.get(TICKERS, json=ticker)
    position = open_position(created_at=BEFORE_ALL)

    result = funding_run()

    assert position.fundings.count() == 0
    assert "mark" in result.failed["BTCUSDT"]


@pytest.mark.django_db
def test_one_refused_position_never_stops_the_others(bybit_prices, http):
    serve(http)
    huge = open_position(side="long", qty="1e17", entry="1", created_at=BEFORE_ALL, fee="6e17")
    fine = open_position(side="long", qty="1", created_at=BEFORE_ALL)

    result = funding_run()

    assert huge.fundings.count() == 0 and fine.fundings.count() == 3
    assert f"#{huge.pk}" in result.failed


@pytest.mark.django_db
def test_the_task_returns_its_figures_and_runs_every_minute(bybit_prices, http):
    serve(http)
    open_position(created_at=BEFORE_ALL)

    answer = paper_funding()

    assert answer["state"] == "ok" and answer["booked"] == 3 and answer["failed"] == {}
    schedule = Schedule.objects.get(name="oms.paper_funding")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == ("oms.tasks.paper_funding", "I", 1)


def _race(*steps) -> list[Exception]:
    """Run each step in its own thread and database connection, all released at once; the errors."""
    import threading

    barrier = threading.Barrier(len(steps))
    errors: list[Exception] = []

    def run(step):
        barrier.wait()
        try:
            step()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(step,)) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_book_each_funding_time_once(bybit_prices):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers anyway; the race matters on PostgreSQL")
    position = open_position(created_at=BEFORE_ALL)
    event = FundingEvent("BTCUSDT", T1, R1)

    def book():
        position_funding_book(position_id=position.pk, event=event, price=MARK)

    assert _race(book, book) == []  # the row lock: the second sees the first's row, no unique violation

    position.refresh_from_db()
    assert position.fundings.count() == 1
    assert position.fee == position.funding == (MARK * R1).quantize(D("1e-10"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(5))
def test_funding_racing_a_close_is_either_in_the_closed_pnl_or_not_booked(bybit_prices, settings, attempt):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers anyway; the race matters on PostgreSQL")
    settings.PAPER_FEE_RATE, settings.PAPER_SLIPPAGE_BPS = D("0.001"), D("0")
    position = open_position(side="long", qty="1", entry="100", created_at=BEFORE_ALL, fee="0.1")

    errors = _race(
        lambda: position_funding_book(position_id=position.pk, event=FundingEvent("BTCUSDT", T1, R1), price=MARK),
        lambda: close_positions([CloseInstruction(position_id=position.pk, price=D("110"), reason="manual")]),
    )

    assert errors == []
    position.refresh_from_db()
    funding = sum(position.fundings.values_list("amount", flat=True), D("0"))
    assert position.status == "closed"
    assert position.funding == funding
    assert position.fee == D("0.1") + funding + D("0.11")  # entry fee, funding if booked, exit fee
    assert position.pnl == D("10") - position.fee


# --- where funding is shown ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_position_page_lists_the_funding_payments(viewer):
    from django.test import Client

    position = open_position(side="short", qty="0.2", created_at=BEFORE_ALL)
    position_funding_book(position_id=position.pk, event=FundingEvent("BTCUSDT", T3, R3), price=MARK)
    client = Client()
    client.force_login(viewer)

    page = client.get(f"/console/positions/{position.pk}").content.decode()

    assert 'id="funding"' in page
    assert "2025-06-19 08:00 UTC" in page
    assert "-2.096337" in page  # 0.2 × 104816.87 × 0.0001, received by the short
    assert "of which funding" in page


@pytest.mark.django_db
def test_the_export_has_the_funding_column():
    import csv
    import io

    from oms.services.exports import positions_export

    position = open_position(side="long", qty="1", created_at=BEFORE_ALL)
    position_funding_book(position_id=position.pk, event=FundingEvent("BTCUSDT", T1, D("0.0001")), price=D("100"))
    handle = io.StringIO()

    positions_export(Position.objects.all(), handle, fmt="csv")

    row = next(csv.DictReader(io.StringIO(handle.getvalue())))
    assert (row["funding"], row["fee"]) == ("0.01", "0.01")
