# ruff: noqa: F811  (the stand-in fixtures are imported by name)
"""Stop and exit signals: the defects a second red-team pass found, each test failed before its fix."""

from __future__ import annotations

from decimal import Decimal

import pytest

from oms.brokers import get_broker
from oms.models import Position
from oms.services.stops import position_stop_move
from oms.tests.test_exit_stop_exchange import position, standin  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def test_a_tighter_move_landing_while_another_is_at_the_exchange_is_never_loosened(
    standin,
    position,
    monkeypatch,  # noqa: F811
):
    broker_class = type(get_broker())
    real = broker_class.move_stop
    calls = []

    def move_stop(self, **kwargs):
        calls.append(kwargs["sl_price"])
        real(self, **kwargs)
        if len(calls) == 1:  # a tighter move (another signal, the console) arrives meanwhile
            assert position_stop_move(position_id=position.pk, sl_price=Decimal("59800")).moved

    monkeypatch.setattr(broker_class, "move_stop", move_stop)
    result = position_stop_move(position_id=position.pk, sl_price=Decimal("59700"))
    exchange_sl = standin.positions["BTCUSDT"].sl
    stored = Position.objects.get(pk=position.pk).sl_price
    assert exchange_sl == Decimal("59800")
    # never loosened without allow_loosen, and LOMS agrees with the exchange
    assert stored == Decimal("59800"), (result, stored, exchange_sl)


def test_an_exit_filled_in_part_is_not_closed_again_by_its_resend(  # noqa: F811
    standin,  # noqa: F811
    anon_client,
    signal_body,
    settings,
    monkeypatch,
):
    from dataclasses import replace

    from oms.models import OrderStatus
    from oms.tests.test_broker_exchange import send
    from oms.tests.test_exit_stop_exchange import exit_

    settings.LIVE_MAX_NOTIONAL_USDT = Decimal("1000")
    settings.MAX_SIZE_PER_POSITION_USDT = Decimal("1000")
    standin.equity = Decimal("100000")
    send(anon_client, signal_body, symbol="ETHUSDT", price=3000, qty=0.08)
    position = Position.objects.get()  # noqa: F811
    broker_class = type(get_broker())
    real = broker_class.close
    fills = []

    def close(self, **kwargs):
        if fills:
            return real(self, **kwargs)
        # the exchange closes 0.03 of the 0.04 asked (its position shrank meanwhile, ADL)
        fill = real(self, **{**kwargs, "qty": kwargs["qty"] - Decimal("0.01")})
        fills.append(fill)
        return replace(fill, status=OrderStatus.PARTIALLY_FILLED)

    monkeypatch.setattr(broker_class, "close", close)
    first = exit_(anon_client, position_id=position.pk, fraction=0.5, signal_id="x-1").json()
    again = exit_(anon_client, position_id=position.pk, fraction=0.5, signal_id="x-1").json()
    position.refresh_from_db()
    # half of 0.08 was asked once: never more than 0.04 closed by the one signal
    assert position.closed_qty <= Decimal("0.04"), (first, again, position.closed_qty)


def test_a_moved_stop_is_stored_as_the_exchange_holds_it(standin, position, anon_client):  # noqa: F811
    from oms.tests.test_exit_stop_exchange import stop

    body = stop(anon_client, position_id=position.pk, sl_price=59700.06).json()
    assert body["outcome"] == "stop_moved"
    held = standin.positions["BTCUSDT"].sl
    assert Position.objects.get(pk=position.pk).sl_price == held, (body, held)
