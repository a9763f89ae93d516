"""The paper broker behind the broker interface fills exactly as the paper close path books."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from oms.brokers import get_broker
from oms.brokers.paper import PaperBroker
from oms.services.closing import close_values
from oms.tests.factories import open_position

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("side", ["long", "short"])
def test_a_paper_close_fill_is_what_close_values_books(settings, side):
    settings.PAPER_FEE_RATE, settings.PAPER_SLIPPAGE_BPS = Decimal("0.0006"), Decimal("5")
    position = open_position(side=side, created_at=timezone.now() - timedelta(minutes=1))
    fill = PaperBroker().close(symbol=position.symbol, side=side, qty=position.qty, price=Decimal("104"))
    values = close_values(position=position, price=Decimal("104"), reason="manual", now=timezone.now())
    assert fill.price == values["close_price"] and fill.qty == position.qty
    assert position.fee + fill.fee == values["fee"]


def test_paper_mode_builds_no_exchange_client(settings):
    settings.BROKER_MODE = "paper"
    broker = get_broker()
    assert isinstance(broker, PaperBroker) and broker.is_paper and not hasattr(broker, "client")
    fill = broker.open(symbol="BTCUSDT", side="long", qty=Decimal("2"), price=Decimal("100"))
    assert (fill.status, fill.price, fill.qty) == ("filled", Decimal("100"), Decimal("2"))
