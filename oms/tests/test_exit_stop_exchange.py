"""Issue #12 §1 on the exchange (demo/live, the loopback stand-in tests/exchange_standin.py): an exit
signal closes with a reduce-only order (for its share on a partial exit); a stop signal moves the
exchange's stop first, and LOMS stores the new level only if the exchange took it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from oms.brokers import reset_brokers
from oms.models import OrderPurpose, Position, PositionStatus, Signal, SignalOutcome
from oms.services.execution import reconcile
from oms.tests.test_broker_exchange import configure, exchange_price, placed, send
from tests.exchange_standin import StandIn

pytestmark = pytest.mark.django_db
TRADING_STOP = {"bitget": "/api/v2/mix/order/place-pos-tpsl", "bybit": "/v5/position/trading-stop"}


@pytest.fixture(params=["bitget", "bybit"])
def standin(request, settings):
    standin = StandIn(request.param).start()
    configure(settings, standin)
    yield standin
    standin.stop()
    reset_brokers()


@pytest.fixture
def position(standin, anon_client, signal_body, monkeypatch) -> Position:
    send(anon_client, signal_body)  # long 0.001 BTCUSDT at 60000, stop 59400 on the exchange
    monkeypatch.setattr("oms.services.stops.market_price", lambda symbol: Decimal("60000"))
    return Position.objects.get(status=PositionStatus.OPEN)


def stop(client, **body):
    body = {"timestamp": "2025-06-19T10:00:00Z", **body}
    return client.post("/signals/stop", data=json.dumps(body), content_type="application/json")


def test_the_exchange_stop_moves_first_and_then_the_stored_one(standin, position, anon_client):
    assert standin.positions["BTCUSDT"].sl == Decimal("59400")
    body = stop(anon_client, position_id=position.pk, sl_price=59700).json()
    assert body["outcome"] == "stop_moved"
    assert standin.positions["BTCUSDT"].sl == Decimal(exchange_price(Decimal("59700")))
    assert Position.objects.get().sl_price == Decimal("59700")
    assert [r for r in standin.private_requests if r.path == TRADING_STOP[standin.exchange]][0].signature_ok is True


def test_a_stop_the_exchange_refuses_is_not_stored_and_may_be_sent_again(standin, position, anon_client):
    standin.fail_next(TRADING_STOP[standin.exchange], "down")
    response = stop(anon_client, position_id=position.pk, sl_price=59700, signal_id="mv-1")
    assert response.status_code == 502
    body = response.json()
    assert (body["outcome"], body["error"], body["received"]) == ("failed", "exchange_stop_failed", True)
    assert standin.positions["BTCUSDT"].sl == Decimal("59400")
    assert Position.objects.get().sl_price == Decimal("59400")
    assert Signal.objects.filter(outcome=SignalOutcome.FAILED).get().dedupe_key is None  # released
    again = stop(anon_client, position_id=position.pk, sl_price=59700, signal_id="mv-1").json()
    assert again["outcome"] == "stop_moved" and standin.positions["BTCUSDT"].sl == Decimal("59700")


def test_a_refused_move_never_reaches_the_exchange(standin, position, anon_client):
    sent_before = len(standin.private_requests)
    assert stop(anon_client, position_id=position.pk, sl_price=59000).json()["outcome"] == "not_moved"  # looser
    assert len(standin.private_requests) == sent_before


def exit_(client, **body):
    body = {"timestamp": "2025-06-19T10:00:00Z", **body}
    return client.post("/signals/exit", data=json.dumps(body), content_type="application/json")


def test_an_exit_signal_closes_its_share_then_the_rest_with_reduce_only_orders(standin, anon_client, signal_body):
    send(anon_client, signal_body, symbol="ETHUSDT", price=3000, qty=0.03)
    position = Position.objects.get()
    body = exit_(anon_client, symbol="ETHUSDT", side="long", fraction=0.5).json()
    assert (body["outcome"], body["closed_qty"], body["remaining_qty"]) == ("partially_closed", 0.01, 0.02)  # lot
    assert standin.positions["ETHUSDT"].qty == Decimal("0.02") and reconcile().state == "ok"
    body = exit_(anon_client, position_id=position.pk).json()
    assert (body["outcome"], body["closed_qty"]) == ("closed", 0.02)
    assert "ETHUSDT" not in standin.positions
    exits = position.orders.filter(purpose=OrderPurpose.EXIT).order_by("id")
    assert [(o.qty, o.reduce_only, o.close_reason) for o in exits] == [
        (Decimal("0.01"), True, "signal"),
        (Decimal("0.02"), True, "signal"),
    ]


def test_an_exit_the_exchange_cannot_take_fails_with_its_reason_and_sends_nothing(standin, anon_client, signal_body):
    send(anon_client, signal_body, symbol="ETHUSDT", price=3000, qty=0.01)
    sent = len(placed(standin))
    response = exit_(anon_client, symbol="ETHUSDT", side="long", fraction=0.5, signal_id="too-small")
    assert response.status_code == 502
    body = response.json()
    assert (body["outcome"], body["error"]) == ("failed", "exchange_close_failed")
    assert "below the minimum order size" in body["detail"] and len(placed(standin)) == sent
    assert Position.objects.get().qty == Decimal("0.01")
