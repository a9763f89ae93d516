"""The red-team's money-safety defects of the exchange broker (issue #11), each reproduced against
the loopback stand-in (tests/exchange_standin.py). No network, no real key."""

from __future__ import annotations

from decimal import Decimal

import pytest

from oms.brokers import reset_brokers
from oms.models import OmsControl, OrderStatus, Position, PositionStatus
from oms.services.execution import reconcile
from oms.tests.test_broker_exchange import LOOKUP, configure, placed, send
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
def test_an_accepted_entry_whose_read_back_fails_stays_submitted_and_counts_for_the_caps(exchange, settings,
                                                                                      anon_client, signal_body):
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


def test_a_rate_limited_read_back_is_retried_and_the_order_is_never_placed_twice(exchange, anon_client, signal_body,
                                                                                fast_backoff):
    exchange.fail_next(LOOKUP[exchange.exchange][0], "rate_limit")
    body = send(anon_client, signal_body).json()
    assert body["risk_ok"] is True and body["order_status"] == "filled"
    assert len(placed(exchange)) == 1 and len(exchange.orders) == 1
    assert Position.objects.get().status == PositionStatus.OPEN
