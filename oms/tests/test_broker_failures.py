"""The red-team's money-safety defects of the exchange broker (issue #11), each reproduced against
the loopback stand-in (tests/exchange_standin.py). No network, no real key."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from oms.brokers import reset_brokers
from oms.exceptions import ExchangeCloseFailed
from oms.models import OmsControl, Order, OrderStatus, Position, PositionStatus
from oms.services.execution import flatten, reconcile
from oms.services.positions import position_close_at_market
from oms.services.switch import switch_state
from oms.tests.test_broker_exchange import LOOKUP, PLACE, configure, placed, send
from tests.exchange_standin import StandIn

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["bitget", "bybit"])
def exchange(request, settings):
    standin = StandIn(request.param).start()
    configure(settings, standin)
    yield standin
    standin.stop()
    reset_brokers()


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr("oms.services.execution.RATE_LIMIT_BACKOFF_SEC", (0.01, 0.01, 0.01))


# --- defect 1: an accepted entry whose read-back fails ------------------------------------------
def test_an_accepted_entry_whose_read_back_fails_stays_submitted_and_counts_for_the_caps(
    exchange, settings, anon_client, signal_body
):
    settings.MAX_OPEN_POSITIONS = 1
    OmsControl.load()
    for path in LOOKUP[exchange.exchange]:
        exchange.fail_next(path, "down", "down")  # the read-back and the look-up after it both fail
    body = send(anon_client, signal_body).json()
    assert body["risk_ok"] is True and body["order_status"] == "submitted" and body["pending"] is True
    position = Position.objects.get()
    assert position.status == PositionStatus.OPEN
    assert position.orders.get().status == OrderStatus.SUBMITTED
    assert len(placed(exchange)) == 1 and "BTCUSDT" in exchange.positions
    # The next signal cannot open the symbol a second time: the in-flight position counts.
    second = send(anon_client, signal_body, price=60001).json()
    assert second["risk_ok"] is False
    assert len(placed(exchange)) == 1 and exchange.positions["BTCUSDT"].qty == Decimal("0.001")
    # The reconciliation settles it by its client order id.
    result = reconcile()
    assert result.state == "ok", result.problems
    assert position.orders.get().status == OrderStatus.FILLED


def test_a_rate_limited_read_back_is_retried_and_the_order_is_never_placed_twice(
    exchange, anon_client, signal_body, fast_backoff
):
    exchange.fail_next(LOOKUP[exchange.exchange][0], "rate_limit")
    body = send(anon_client, signal_body).json()
    assert body["risk_ok"] is True and body["order_status"] == "filled"
    assert len(placed(exchange)) == 1 and len(exchange.orders) == 1
    assert Position.objects.get().status == PositionStatus.OPEN


def age(order_filter: dict, minutes: int = 5) -> None:
    Order.objects.filter(**order_filter).update(created_at=timezone.now() - timedelta(minutes=minutes))


# --- defect 2: the reconciliation and an entry still in flight ----------------------------------
def entry_in_flight(exchange, anon_client, signal_body) -> Order:
    """An entry sent but not visible on the exchange yet (LOMS has it `submitted`)."""
    exchange.fail_next(PLACE[exchange.exchange], "timeout_after_accept")
    exchange.fail_next(LOOKUP[exchange.exchange][0], "down")  # the look-up after the timeout fails
    send(anon_client, signal_body)
    order = Order.objects.get()
    held, sent = exchange.positions.pop("BTCUSDT"), exchange.orders.pop(order.client_order_id)
    exchange.late = (held, sent)
    assert order.status == OrderStatus.SUBMITTED
    return order


def test_the_reconciliation_leaves_a_young_submitted_entry_alone_and_rejects_it_only_after_the_grace(
    exchange, anon_client, signal_body
):
    order = entry_in_flight(exchange, anon_client, signal_body)
    result = reconcile()
    order.refresh_from_db()
    assert result.state == "ok" and order.status == OrderStatus.SUBMITTED
    assert Position.objects.get().status == PositionStatus.OPEN and switch_state().switch_on
    age({"pk": order.pk})
    assert reconcile().resolved_orders == [order.pk]
    order.refresh_from_db()
    assert order.status == OrderStatus.REJECTED and Position.objects.get().status == PositionStatus.CANCELLED


def test_a_late_fill_of_an_entry_marked_rejected_turns_the_switch_off_naming_it(exchange, anon_client, signal_body):
    order = entry_in_flight(exchange, anon_client, signal_body)
    age({"pk": order.pk})
    reconcile()
    held, sent = exchange.late  # the order arrives after all
    exchange.positions["BTCUSDT"], exchange.orders[order.client_order_id] = held, sent
    assert reconcile().state == "mismatch"
    reason = switch_state().reason
    assert not switch_state().switch_on
    assert f"late fill of entry order {order.client_order_id} already marked rejected" in reason


# --- defect 3 (and 8, 9): an exit order left submitted ------------------------------------------
def exit_left_submitted(exchange, anon_client, signal_body) -> Position:
    send(anon_client, signal_body)
    position = Position.objects.get()
    exchange.fail_next(PLACE[exchange.exchange], "timeout_after_accept")
    exchange.fail_next(LOOKUP[exchange.exchange][0], "down")
    with pytest.raises(ExchangeCloseFailed):
        position_close_at_market(position_id=position.pk)
    assert position.orders.get(purpose="exit").status == OrderStatus.SUBMITTED
    return position


def test_an_exit_left_submitted_blocks_a_second_close_and_is_booked_by_the_reconciliation(
    exchange, anon_client, signal_body
):
    position = exit_left_submitted(exchange, anon_client, signal_body)
    assert exchange.positions == {}  # the exchange filled it
    with pytest.raises(ExchangeCloseFailed, match="already in flight"):
        position_close_at_market(position_id=position.pk)
    assert len(placed(exchange)) == 2
    flat = flatten(actor="olga")  # defect 8: LOMS still shows it open: not flat
    assert not flat.flat and any(f"position {position.pk}" in row for row in flat.remaining_in_loms)
    result = reconcile()
    position.refresh_from_db()
    exit_order = position.orders.get(purpose="exit")
    sent = exchange.orders[exit_order.client_order_id]
    assert result.closed == [position.pk] and position.status == PositionStatus.CLOSED
    assert (exit_order.status, exit_order.price, exit_order.fee) == ("filled", sent.price, sent.fee)
    assert position.close_price == sent.price
    assert position.fee == position.orders.get(purpose="entry").fee + sent.fee
    assert len(placed(exchange)) == 2
    assert flatten(actor="olga").flat


def test_an_exit_not_found_after_the_grace_is_rejected_and_a_new_close_can_be_sent(exchange, anon_client, signal_body):
    send(anon_client, signal_body)
    position = Position.objects.get()
    exchange.fail_next(PLACE[exchange.exchange], "timeout_before_accept")
    exchange.fail_next(LOOKUP[exchange.exchange][0], "down")
    with pytest.raises(ExchangeCloseFailed):
        position_close_at_market(position_id=position.pk)
    exit_order = position.orders.get(purpose="exit")
    assert exit_order.status == OrderStatus.SUBMITTED
    assert reconcile().resolved_orders == []  # within the grace
    age({"pk": exit_order.pk})
    assert reconcile().resolved_orders == [exit_order.pk]
    exit_order.refresh_from_db()
    assert exit_order.status == OrderStatus.REJECTED
    assert position_close_at_market(position_id=position.pk).closed_now
    assert exchange.positions == {}


def test_flatten_is_not_flat_while_loms_still_shows_a_position_whose_close_failed(exchange, anon_client, signal_body):
    send(anon_client, signal_body)
    exchange.fail_next(PLACE[exchange.exchange], "insufficient")  # the LOMS close is refused
    result = flatten(actor="olga")
    assert exchange.positions == {}  # the exchange-side sweep of flatten closed it
    assert not result.flat and Position.objects.open().exists()
    assert result.remaining_in_loms


@pytest.mark.django_db(transaction=True)
def test_an_exchange_close_sends_outside_any_database_transaction(settings, signal_body, monkeypatch):
    from django.db import connection

    from oms.services.signals import signal_ingest

    standin = StandIn("bybit").start()
    try:
        configure(settings, standin)
        OmsControl.load()
        signal_ingest(payload=signal_body(price=60000, qty=0.001, tp_pct=2, sl_pct=1))
        position = Position.objects.get()
        seen = {}
        from oms.brokers.bybit import BybitBroker

        real_close = BybitBroker.close

        def watched_close(self, **kwargs):
            seen["in_atomic"] = connection.in_atomic_block
            seen["status"] = Order.objects.get(client_order_id=kwargs["client_order_id"]).status
            return real_close(self, **kwargs)

        monkeypatch.setattr(BybitBroker, "close", watched_close)
        assert position_close_at_market(position_id=position.pk).closed_now
        assert seen == {"in_atomic": False, "status": OrderStatus.SUBMITTED}
    finally:
        standin.stop()
        reset_brokers()


# --- defect 4: back to paper with exchange positions still open ---------------------------------
def test_paper_mode_never_closes_an_exchange_position_at_a_simulated_price(
    exchange, settings, anon_client, signal_body, operator_client
):
    from oms.services.sweep import auto_close_sweep
    from oms.tests.test_sweep import StubSource

    send(anon_client, signal_body)
    position = Position.objects.get()
    settings.BROKER_MODE = "paper"
    reset_brokers()
    sent_before = len(exchange.requests)
    response = operator_client.post(f"/positions/{position.pk}/close")
    assert response.status_code == 409 and "BROKER_MODE is paper" in response.json()["detail"]
    result = flatten(actor="olga")
    assert not result.flat and f"position {position.pk}" in result.failed
    settings.MAX_HOLDING_MIN = 1
    Position.objects.update(created_at=timezone.now() - timedelta(hours=1))
    auto_close_sweep(source=StubSource({"BTCUSDT": "59000"}))
    position.refresh_from_db()
    assert position.status == PositionStatus.OPEN and "BTCUSDT" in exchange.positions
    assert len(exchange.requests) == sent_before


# --- defect 6: a partial exit fill ---------------------------------------------------------------
def test_a_partial_exit_fill_is_booked_as_a_partial_exit_and_turns_the_switch_off(exchange, anon_client, signal_body):
    send(anon_client, signal_body, symbol="ETHUSDT", price=3000, qty=0.02)
    exchange.positions["ETHUSDT"].qty = Decimal("0.01")  # half reduced on the exchange (ADL)
    position = Position.objects.get()
    with pytest.raises(ExchangeCloseFailed, match="partial exit fill: 0.01 of 0.02"):
        position_close_at_market(position_id=position.pk)
    position.refresh_from_db()
    exit_order = position.orders.get(purpose="exit")
    assert position.status == PositionStatus.OPEN and position.pnl is None
    assert (position.qty, position.closed_qty) == (Decimal("0.01"), Decimal("0.01"))  # what filled is booked
    assert (exit_order.status, exit_order.filled_qty) == (OrderStatus.PARTIALLY_FILLED, Decimal("0.01"))
    state = switch_state()
    assert not state.switch_on and "partial exit fill: 0.01 of 0.02" in state.reason


# --- defect 7: the reason of an exchange-side close ----------------------------------------------
def test_a_stop_that_slipped_past_its_level_is_booked_as_an_exchange_stop_loss(exchange, anon_client, signal_body):
    send(anon_client, signal_body)
    held = exchange.positions.pop("BTCUSDT")
    exchange._record_close("BTCUSDT", held, Decimal("59410"), held.qty)  # the stop filled 10 above its level
    reconcile()
    assert Position.objects.get().auto_close_reason == "exchange_sl"
    send(anon_client, signal_body, symbol="ETHUSDT", price=3000, qty=0.01)
    held = exchange.positions.pop("ETHUSDT")
    exchange._record_close("ETHUSDT", held, Decimal("3000"), held.qty)  # closed in the exchange's app
    reconcile()
    assert Position.objects.get(symbol="ETHUSDT").auto_close_reason == "exchange_close"


def test_a_trailed_stop_hit_above_the_entry_is_booked_as_an_exchange_stop_loss(
    exchange, settings, anon_client, signal_body
):
    from oms.services.sweep import auto_close_sweep
    from oms.tests.test_broker_exchange import open_via_signal
    from oms.tests.test_sweep import StubSource

    settings.TRAILING_ACTIVATION_PCT, settings.TRAILING_DISTANCE_PCT = Decimal("1"), Decimal("0.5")
    position = open_via_signal(anon_client, signal_body, exit_strategy="tp_sl_trailing_v1", tp_pct=10)
    auto_close_sweep(source=StubSource({"BTCUSDT": "61000"}))
    stop = exchange.trigger("BTCUSDT", "sl")
    assert stop > Decimal("60000")  # the trailed stop, in profit
    reconcile()
    position.refresh_from_db()
    assert (position.status, position.auto_close_reason) == ("closed", "exchange_sl")


# --- defect 5: POST /orders without TP/SL in demo/live -------------------------------------------
def test_an_api_order_without_tp_and_sl_is_refused_in_demo_and_live(exchange, operator_client):
    response = operator_client.post(
        "/orders", {"symbol": "BTCUSDT", "side": "long", "qty": 0.001, "entry_price": 60000}, format="json"
    )
    assert response.status_code == 400, response.content
    text = response.content.decode()
    assert "sl_price" in text and "tp_price" in text
    response = operator_client.post(
        "/orders",
        {"symbol": "BTCUSDT", "side": "long", "qty": 0.001, "entry_price": 60000, "tp_price": 61200},
        format="json",
    )
    assert response.status_code == 400 and "sl_price" in response.content.decode()
    assert not Position.objects.exists() and exchange.private_requests == []


# --- defect 11: where an exchange position lives -------------------------------------------------
def test_an_exchange_position_names_the_configured_exchange_and_the_api_shows_its_broker_mode(
    exchange, anon_client, signal_body, operator_client
):
    send(anon_client, signal_body, exchange="binance")
    position = Position.objects.get()
    assert (position.exchange, position.market_type, position.broker_mode) == (exchange.exchange, "linear_perp", "demo")
    row = operator_client.get("/positions").json()["results"][0]
    assert (row["exchange"], row["market_type"], row["broker_mode"]) == (exchange.exchange, "linear_perp", "demo")
    assert position.orders.get().exchange == exchange.exchange


# --- defect 12: what operators and the bot are told ----------------------------------------------
def test_health_says_the_broker_turned_the_switch_off(exchange, anon_client, signal_body, operator_client):
    from tests.exchange_standin import Held

    send(anon_client, signal_body)
    exchange.positions["ETHUSDT"] = Held("short", Decimal("0.01"), Decimal("3000"))
    reconcile()
    reasons = {r["code"]: r for r in operator_client.get("/health").json()["reasons"]}
    assert "by the broker" in reasons["switch_off"]["message"]


def test_the_bot_is_told_a_short_reason_never_the_exchange_url_or_raw_answer(exchange, anon_client, signal_body):
    exchange.fail_next(PLACE[exchange.exchange], "down")
    body = send(anon_client, signal_body).json()
    assert body["risk_ok"] is False
    assert body["risk_reason"] == "exchange refused the order: the order never reached the exchange"
    exchange.fail_next(PLACE[exchange.exchange], "insufficient")
    body = send(anon_client, signal_body).json()
    assert body["risk_reason"] == "exchange refused the order: insufficient balance"
    detail = Order.objects.order_by("-id").first().error
    assert "127.0.0.1" not in body["risk_reason"] and "insufficient balance" in detail and len(detail) > 40


def test_paper_flatten_says_what_it_checked(settings):
    import io

    from django.core.management import call_command

    settings.BROKER_MODE = "paper"
    reset_brokers()
    out = io.StringIO()
    call_command("flatten", "--yes", stdout=out)
    assert "FLAT" in out.getvalue() and "exchange confirms" not in out.getvalue()
    assert "paper mode: no exchange" in out.getvalue()


def test_the_mode_banner_is_on_admin_pages_and_the_404_page(exchange, settings, operator):
    from django.test import Client

    operator.is_staff = operator.is_superuser = True
    operator.save()
    console = Client()
    console.force_login(operator)
    for url in ["/admin/", "/admin/oms/position/", "/console/no-such-page"]:
        response = console.get(url)
        assert "DEMO: orders go to the exchange" in response.content.decode(), url
