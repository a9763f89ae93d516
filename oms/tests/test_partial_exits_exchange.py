"""Partial exits and tp_scale_out on the exchange: the defects a red-team pass found, each test
failed before its fix. No network: the exchange is the loopback stand-in (tests/exchange_standin.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from oms.brokers import reset_brokers
from oms.exceptions import ExchangeCloseFailed
from oms.models import OrderStatus, Position, PositionStatus
from oms.services.execution import reconcile
from oms.services.sweep import auto_close_sweep
from oms.services.switch import switch_state
from oms.tests.test_broker_exchange import LOOKUP, PLACE, configure, open_via_signal
from tests.exchange_standin import Held, StandIn

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["bitget", "bybit"])
def exchange(request, settings):
    standin = StandIn(request.param).start()
    configure(settings, standin)
    yield standin
    standin.stop()
    reset_brokers()


def scale_out_position(exchange, settings, anon_client, signal_body, qty=0.003) -> Position:
    settings.TP1_PCT, settings.TP1_FRACTION, settings.TRAILING_ACTIVATION_PCT = (
        Decimal("1"),
        Decimal("0.5"),
        Decimal("5"),
    )
    settings.LIVE_MAX_NOTIONAL_USDT = Decimal("1000")
    exchange.equity = Decimal("10000")
    return open_via_signal(anon_client, signal_body, exit_strategy="tp_scale_out", tp_pct=10, qty=qty)


def sweep_at(price: str):
    from oms.tests.test_sweep import StubSource

    return auto_close_sweep(source=StubSource({"BTCUSDT": price}))


def exit_orders_sent(exchange, position) -> list[str]:
    return sorted(cid for cid in exchange.orders if cid.startswith(f"loms-{position.pk}-c"))


def test_a_tp1_exit_booked_by_the_reconciliation_is_not_sent_again_by_the_sweep(
    exchange, settings, anon_client, signal_body
):
    position = scale_out_position(exchange, settings, anon_client, signal_body)
    exchange.fail_next(PLACE[exchange.exchange], "timeout_after_accept")
    exchange.fail_next(LOOKUP[exchange.exchange][0], "down")
    sweep_at("60700")  # TP1: the order is taken by the exchange, its answer is lost
    assert exchange.positions["BTCUSDT"].qty == Decimal("0.002")
    assert position.orders.get(purpose="exit").status == OrderStatus.SUBMITTED
    reconcile()  # books the TP1 fill as a partial exit
    position.refresh_from_db()
    assert position.qty == Decimal("0.002") and position.is_open
    sweep_at("60700")
    position.refresh_from_db()
    assert exit_orders_sent(exchange, position) == [f"loms-{position.pk}-c1"]  # TP1 sent once
    assert position.qty == exchange.positions["BTCUSDT"].qty == Decimal("0.002")
    assert (position.exit_meta or {}).get("tp1_done") is True
    assert position.sl_price == position.entry_price


def test_a_partially_filled_tp1_exit_is_not_sent_again_by_the_sweep(exchange, settings, anon_client, signal_body):
    position = scale_out_position(exchange, settings, anon_client, signal_body, qty=0.004)
    exchange.positions["BTCUSDT"].qty = Decimal("0.001")  # the exchange reduced it (ADL): TP1 fills 0.001 of 0.002
    sweep_at("60700")
    position.refresh_from_db()
    assert position.qty == Decimal("0.003") and position.closed_qty == Decimal("0.001")

    assert "partial exit fill" in switch_state().reason
    # An operator brings the exchange back to LOMS's 0.003 (or the ADL is undone); the sweep runs on.
    exchange.positions["BTCUSDT"] = Held("long", Decimal("0.003"), Decimal("60000"))
    sweep_at("60700")
    position.refresh_from_db()
    assert position.orders.filter(purpose="exit").count() == 1  # TP1 done once
    assert exit_orders_sent(exchange, position) == [f"loms-{position.pk}-c1"]


def test_an_exchange_stop_after_tp1_books_every_fee_the_exchange_charged(exchange, settings, anon_client, signal_body):
    position = scale_out_position(exchange, settings, anon_client, signal_body)
    sweep_at("60700")  # TP1: 0.001 closed, the stop moved to break-even
    position.refresh_from_db()
    assert position.qty == Decimal("0.002")
    exchange.trigger("BTCUSDT", "sl")  # the exchange's stop closes the rest
    reconcile()
    position.refresh_from_db()
    assert position.status == PositionStatus.CLOSED
    entry_fee = exchange.orders[f"loms-{position.pk}-o"].fee
    tp1_fee = exchange.orders[f"loms-{position.pk}-c1"].fee
    final_fee = exchange.history[-1]["close_fee"]
    assert position.fee == entry_fee + tp1_fee + final_fee


def test_a_partial_exit_in_flight_is_not_a_size_mismatch(exchange, settings, anon_client, signal_body, monkeypatch):
    monkeypatch.setattr("oms.brokers.ccxt_base.CcxtBroker.FILL_WAIT_SEC", 0.0)
    position = scale_out_position(exchange, settings, anon_client, signal_body)
    exchange.unfilled_lookups = 100  # the exchange keeps saying "not filled yet" for the TP1 order
    sweep_at("60700")
    assert position.orders.get(purpose="exit").status == OrderStatus.SUBMITTED
    reconcile()
    assert switch_state().switch_on, switch_state().reason


def exchange_price(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.1"))


def test_tp1_never_loosens_a_trailed_exchange_stop(exchange, settings, anon_client, signal_body):
    position = scale_out_position(exchange, settings, anon_client, signal_body)
    settings.TRAILING_ACTIVATION_PCT, settings.TRAILING_DISTANCE_PCT = Decimal("0.5"), Decimal("0.2")
    sweep_at("60500")  # +0.83 %: the stop trails to 60379, on the exchange too
    trailed = exchange.positions["BTCUSDT"].sl
    assert trailed > Decimal("60300")
    sweep_at("60700")  # TP1
    position.refresh_from_db()
    assert position.qty == Decimal("0.002") and position.exit_meta["tp1_done"] is True
    held = exchange.positions["BTCUSDT"]
    assert held.sl >= trailed  # never loosened
    assert held.sl == exchange_price(position.dynamic_sl_price)  # LOMS and the exchange agree


def test_a_tp1_share_below_the_lot_minimum_still_lets_the_stop_trail(exchange, settings, anon_client, signal_body):
    position = scale_out_position(exchange, settings, anon_client, signal_body, qty=0.001)  # 50 %: 0.0005 < 0.001
    settings.TRAILING_ACTIVATION_PCT, settings.TRAILING_DISTANCE_PCT = Decimal("2"), Decimal("0.5")
    original = exchange.positions["BTCUSDT"].sl
    sweep_at("63000")  # +5 %: far past TP1 and the trailing activation
    position.refresh_from_db()
    assert position.qty == Decimal("0.001")  # nothing closed: the share is below the minimum
    assert position.dynamic_sl_price is not None and position.dynamic_sl_price > position.entry_price
    assert exchange.positions["BTCUSDT"].sl > original


def test_a_stale_tp1_decision_is_not_sent_twice(exchange, settings, anon_client, signal_body):
    from django.utils import timezone

    from oms.exits import ExitContext, ExitParams, evaluate_exit, level_update, partial_close_action
    from oms.services.closing import CloseInstruction
    from oms.services.execution import sweep_exchange_positions

    position = scale_out_position(exchange, settings, anon_client, signal_body)
    price = Decimal("60700")
    actions = evaluate_exit(
        position,
        position.exit_strategy,
        ExitContext(price=price, quote=None, now=timezone.now()),
        ExitParams.from_settings(),
    )
    partial, levels = partial_close_action(actions), level_update(actions)
    instruction = CloseInstruction(position.pk, price, partial.reason, levels.level_fields, fraction=partial.fraction)
    sweep_exchange_positions([instruction], [])  # sweep A (its lease then runs out)
    sweep_exchange_positions([instruction], [])  # sweep B evaluated the same, before A stored tp1_done
    position.refresh_from_db()
    assert exit_orders_sent(exchange, position) == [f"loms-{position.pk}-c1"]
    assert position.qty == Decimal("0.002")


def test_a_tp1_order_booked_by_the_reconciliation_keeps_its_reason(exchange, settings, anon_client, signal_body):
    position = scale_out_position(exchange, settings, anon_client, signal_body)
    exchange.fail_next(PLACE[exchange.exchange], "timeout_after_accept")
    exchange.fail_next(LOOKUP[exchange.exchange][0], "down")
    sweep_at("60700")
    reconcile()
    exit_order = position.orders.get(purpose="exit")
    assert exit_order.status == OrderStatus.FILLED and exit_order.close_reason == "tp1"


def test_a_partial_close_takes_its_share_of_what_is_open_under_the_lock(exchange, settings, anon_client, signal_body):
    from oms.services.execution import exchange_position_close

    settings.LIVE_MAX_NOTIONAL_USDT = Decimal("1000")
    exchange.equity = Decimal("10000")
    position = open_via_signal(anon_client, signal_body, qty=0.004)
    stale = Position.objects.get(pk=position.pk)  # what the operator's close read (qty 0.004)
    exchange_position_close(position=position, reason="signal", fraction=Decimal("0.5"))  # TP1, say: 0.002 left
    result = exchange_position_close(position=stale, reason="manual", fraction=Decimal("0.5"))
    position.refresh_from_db()
    assert position.is_open and position.qty == Decimal("0.001")  # half of the 0.002 open at the lock
    assert not result.closed_now


def test_an_operator_close_filled_in_part_is_in_the_operator_audit(exchange, anon_client, signal_body):
    from oms.models import OperatorAction
    from oms.services.operator_audit import Operator
    from oms.services.positions import position_close_at_market
    from oms.tests.test_broker_exchange import send

    send(anon_client, signal_body, symbol="ETHUSDT", price=3000, qty=0.02)
    exchange.positions["ETHUSDT"].qty = Decimal("0.01")  # half reduced on the exchange (ADL)
    position = Position.objects.get()
    with pytest.raises(ExchangeCloseFailed):
        position_close_at_market(position_id=position.pk, operator=Operator("olga", "api", reason="out"))
    position.refresh_from_db()
    assert position.closed_qty == Decimal("0.01")  # booked
    assert OperatorAction.objects.filter(position=position, action="close").exists()


def test_a_reconciliation_during_a_partial_exit_books_its_fill_once(
    exchange, settings, anon_client, signal_body, monkeypatch
):
    from oms.brokers.ccxt_base import CcxtBroker
    from oms.services.positions import position_close_at_market

    settings.LIVE_MAX_NOTIONAL_USDT = Decimal("1000")
    exchange.equity = Decimal("10000")
    position = open_via_signal(anon_client, signal_body, qty=0.004)
    real_close = CcxtBroker.close

    def close_then_reconcile(self, **kwargs):  # the broker loop's reconciliation lands in the window
        fill = real_close(self, **kwargs)
        reconcile()
        return fill

    monkeypatch.setattr(CcxtBroker, "close", close_then_reconcile)
    position_close_at_market(position_id=position.pk, reason="signal", fraction=Decimal("0.5"))
    position.refresh_from_db()
    assert exchange.positions["BTCUSDT"].qty == Decimal("0.002")
    assert position.status == PositionStatus.OPEN, (
        f"LOMS closed it; the exchange holds {exchange.positions['BTCUSDT'].qty}"
    )
    assert (position.qty, position.closed_qty) == (Decimal("0.002"), Decimal("0.002"))  # booked once


def test_a_trail_decided_before_a_stop_move_never_loosens_the_exchange_stop(
    exchange, anon_client, signal_body, monkeypatch
):
    from oms.services.execution import sweep_exchange_positions
    from oms.services.stops import position_stop_move

    monkeypatch.setattr("oms.services.stops.market_price", lambda symbol: Decimal("60000"))  # the quote now
    position = open_via_signal(anon_client, signal_body, exit_strategy="tp_sl_trailing_v1", tp_pct=10)
    stale = Position(id=position.pk, dynamic_sl_price=Decimal("59700"), exit_meta={"best_price": "60000"})
    moved = position_stop_move(position_id=position.pk, sl_price=Decimal("59900"))  # a person, meanwhile
    assert moved.moved, moved.refused
    assert exchange.positions["BTCUSDT"].sl == Decimal("59900")
    _, updates = sweep_exchange_positions([], [stale])
    assert updates == [] and exchange.positions["BTCUSDT"].sl == Decimal("59900")


def test_a_tp1_fill_records_its_net_pnl_for_the_daily_loss(exchange, settings, anon_client, signal_body):
    from django.utils import timezone

    from oms.services.trips import daily_loss

    position = scale_out_position(exchange, settings, anon_client, signal_body)
    sweep_at("60700")  # TP1: 0.001 closed at the exchange's fill
    position.refresh_from_db()
    tp1 = exchange.orders[f"loms-{position.pk}-c1"]
    net = (tp1.price - position.entry_price) * tp1.qty - tp1.fee
    assert position.orders.get(purpose="exit").partial_exit_pnl == net
    assert daily_loss(now=timezone.now(), since=None) == max(-net, Decimal("0"))
