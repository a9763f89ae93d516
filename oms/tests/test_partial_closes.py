"""Partial exits through the one close path (issue #12 §2): what a position keeps across them, and
that the trade is booked once, with its whole PnL, when the rest closes."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from oms.models import Order, OrderPurpose, Position, PositionStatus
from oms.selectors import book_stats, position_stats
from oms.services.closing import CloseInstruction, close_positions
from oms.services.positions import position_close
from oms.tests.factories import open_position

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def paper_costs(settings):
    settings.PAPER_FEE_RATE = Decimal("0.001")
    settings.PAPER_SLIPPAGE_BPS = Decimal("0")


def test_a_partial_exit_keeps_the_rest_open_with_its_realised_pnl_and_fees():
    position = open_position(entry="100", qty="2", fee=Decimal("0.2"))
    outcome = close_positions([CloseInstruction(position.pk, Decimal("110"), "signal", fraction=Decimal("0.25"))])
    assert outcome.closed == [] and [p.pk for p in outcome.partially_closed] == [position.pk]
    assert outcome.exited == {position.pk: Decimal("0.5")}
    position.refresh_from_db()
    assert position.status == PositionStatus.OPEN and position.pnl is None
    assert (position.qty, position.closed_qty, position.opened_qty) == (Decimal("1.5"), Decimal("0.5"), Decimal("2"))
    assert position.realized_gross_pnl == Decimal("5")  # (110 - 100) × 0.5
    assert position.fee == Decimal("0.2") + Decimal("0.055")  # entry fee + 110 × 0.5 × 0.001
    assert position.realized_pnl == Decimal("5") - Decimal("0.255")
    exit_order = position.orders.get(purpose=OrderPurpose.EXIT)
    assert (exit_order.qty, exit_order.price, exit_order.close_reason) == (Decimal("0.5"), Decimal("110"), "signal")


def test_the_final_close_books_the_whole_trade_once():
    position = open_position(entry="100", qty="2", fee=Decimal("0.2"))
    close_positions([CloseInstruction(position.pk, Decimal("110"), "tp1", fraction=Decimal("0.5"))])
    assert book_stats({})["closed_positions"] == 0  # a partial exit is not a trade
    result = position_close(position=position, price=Decimal("90"), reason="sl")
    assert result.closed_now and result.exited_qty == Decimal("1")
    position.refresh_from_db()
    fees = Decimal("0.2") + Decimal("0.11") + Decimal("0.09")
    assert position.status == PositionStatus.CLOSED
    assert position.pnl == Decimal("10") - Decimal("10") - fees  # +10 on the first half, -10 on the rest
    assert position.opened_qty == Decimal("2") and position.fee == fees
    exits = list(position.orders.filter(purpose=OrderPurpose.EXIT).order_by("id").values_list("qty", "close_reason"))
    assert exits == [(Decimal("1"), "tp1"), (Decimal("1"), "sl")]
    stats, from_scratch = book_stats({}), position_stats(Position.objects.all())
    assert stats["closed_positions"] == 1 and stats["total_pnl"] == position.pnl == from_scratch["total_pnl"]
    assert stats["total_fees"] == fees


def test_a_partial_exit_of_everything_is_the_close_and_a_qty_above_what_is_open_is_capped():
    position = open_position(entry="100", qty="1")
    close_positions([CloseInstruction(position.pk, Decimal("101"), "signal", qty=Decimal("5"))])
    position.refresh_from_db()
    assert position.status == PositionStatus.CLOSED and position.pnl == Decimal("1") - Decimal("0.101")
    assert position.orders.get(purpose=OrderPurpose.EXIT).qty == Decimal("1")


def test_a_fraction_too_small_to_close_anything_is_refused_for_that_position_only():
    tiny, other = open_position(qty="0.0000000001"), open_position(symbol="ETHUSDT")
    outcome = close_positions(
        [
            CloseInstruction(tiny.pk, Decimal("100"), "signal", fraction=Decimal("0.5")),
            CloseInstruction(other.pk, Decimal("100"), "signal", fraction=Decimal("0.5")),
        ]
    )
    assert "exit quantity 0E-10 is not positive" in outcome.failed[tiny.pk]
    assert [p.pk for p in outcome.partially_closed] == [other.pk]
    tiny.refresh_from_db()
    assert tiny.qty == Decimal("0.0000000001") and not tiny.orders.exists()


def test_a_partial_exit_writes_the_levels_its_policy_moved():
    position = open_position(entry="100", qty="1", sl="98")
    close_positions(
        [
            CloseInstruction(
                position.pk,
                Decimal("102"),
                "tp1",
                {"sl_price": Decimal("100"), "exit_meta": {"tp1_done": True}},
                fraction=Decimal("0.5"),
            )
        ]
    )
    position.refresh_from_db()
    assert position.sl_price == Decimal("100") and position.exit_meta == {"tp1_done": True}
    assert position.qty == Decimal("0.5")


@pytest.mark.django_db(transaction=True)
def test_two_partial_exits_at_once_never_close_more_than_the_position_holds():
    position = open_position(entry="100", qty="1")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def exit_seven_tenths() -> None:
        try:
            barrier.wait(timeout=10)
            close_positions([CloseInstruction(position.pk, Decimal("100"), "signal", qty=Decimal("0.7"))])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=exit_seven_tenths) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    position.refresh_from_db()
    exits = Order.objects.filter(position=position, purpose=OrderPurpose.EXIT).order_by("id")
    assert [o.qty for o in exits] == [Decimal("0.7"), Decimal("0.3")]
    assert position.status == PositionStatus.CLOSED and position.closed_qty + position.qty == Decimal("1")
    assert Position.objects.get(pk=position.pk).qty == Decimal("0.3")  # the last part closed with it


# --- on the exchange (demo/live): a reduce-only order for the share, rounded to the lot ---------
@pytest.fixture(params=["bitget", "bybit"])
def exchange(request, settings):
    from oms.brokers import reset_brokers
    from oms.tests.test_broker_exchange import configure
    from tests.exchange_standin import StandIn

    standin = StandIn(request.param).start()
    configure(settings, standin)
    yield standin
    standin.stop()
    reset_brokers()


def test_a_partial_exit_on_the_exchange_is_a_reduce_only_order_for_the_share(exchange, anon_client, signal_body):
    from oms.services.execution import reconcile
    from oms.services.positions import position_close_at_market
    from oms.tests.test_broker_exchange import placed, send

    send(anon_client, signal_body, symbol="ETHUSDT", price=3000, qty=0.03)
    position = Position.objects.get()
    result = position_close_at_market(position_id=position.pk, reason="signal", fraction=Decimal("0.5"))
    assert not result.closed_now and result.exited_qty == Decimal("0.01")  # 0.015 rounded down to the lot
    exit_order_sent = list(exchange.orders.values())[-1]
    assert len(placed(exchange)) == 2 and exit_order_sent.reduce_only and exit_order_sent.qty == Decimal("0.01")
    position.refresh_from_db()
    assert position.status == PositionStatus.OPEN and position.qty == Decimal("0.02")
    assert exchange.positions["ETHUSDT"].qty == Decimal("0.02")  # LOMS and the exchange agree
    assert reconcile().state == "ok"
    exit_order = position.orders.get(purpose=OrderPurpose.EXIT)
    assert (exit_order.status, exit_order.filled_qty, exit_order.close_reason) == ("filled", Decimal("0.01"), "signal")


def test_a_partial_exit_below_the_exchange_minimum_is_refused_and_sends_nothing(exchange, anon_client, signal_body):
    from oms.exceptions import ExchangeCloseFailed
    from oms.services.positions import position_close_at_market
    from oms.tests.test_broker_exchange import placed, send

    send(anon_client, signal_body, symbol="ETHUSDT", price=3000, qty=0.01)
    position = Position.objects.get()
    sent = len(placed(exchange))
    with pytest.raises(ExchangeCloseFailed, match="below the minimum order size"):
        position_close_at_market(position_id=position.pk, reason="signal", fraction=Decimal("0.5"))
    assert len(placed(exchange)) == sent
    position.refresh_from_db()
    assert position.qty == Decimal("0.01") and not position.orders.filter(purpose=OrderPurpose.EXIT).exists()
