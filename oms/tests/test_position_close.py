"""Manual close: POST /positions/{id}/close and the close service under it."""

from decimal import Decimal

import pytest

from oms.models import Order, OrderPurpose, Position, PositionStatus
from oms.services.positions import position_close, positions_close_all
from oms.tests.factories import open_position
from pricing.quotes import QuoteError
from pricing.sources.dummy import DummySource
from tests.support import run_together


@pytest.fixture
def dummy_prices(settings):
    """Quotes at exactly 100.00 (bid 99.95, ask 100.05)."""
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "dummy"


@pytest.mark.django_db
def test_closing_an_open_long_books_pnl_at_the_current_price(anon_client, dummy_prices):
    position = open_position(entry="90", qty="2")
    response = anon_client.post(f"/positions/{position.pk}/close")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["close_price"], body["pnl"], body["auto_close_reason"]) == (
        "closed",
        100.0,
        20.0,
        "manual",
    )
    assert body["closed_now"] is True
    exit_order = Order.objects.get(position=position, purpose=OrderPurpose.EXIT)
    assert (exit_order.price, exit_order.status) == (Decimal("100"), "filled")


@pytest.mark.django_db
def test_trailing_slash_works_for_close(anon_client, dummy_prices):
    position = open_position()
    assert anon_client.post(f"/positions/{position.pk}/close/").status_code == 200


@pytest.mark.django_db
def test_short_pnl_is_mirrored(anon_client, dummy_prices):
    position = open_position(side="short", entry="110", qty="3", tp="100", sl="120")
    assert anon_client.post(f"/positions/{position.pk}/close").json()["pnl"] == 30.0


@pytest.mark.django_db
def test_price_mode_applies_to_the_manual_close(anon_client, dummy_prices, settings):
    settings.PRICE_MODE = "bid"
    position = open_position()
    assert anon_client.post(f"/positions/{position.pk}/close").json()["close_price"] == 99.95


@pytest.mark.django_db
def test_an_already_closed_position_is_returned_as_is(anon_client, dummy_prices):
    position = open_position(entry="90")
    first = anon_client.post(f"/positions/{position.pk}/close").json()
    second = anon_client.post(f"/positions/{position.pk}/close").json()
    assert second["closed_now"] is False
    assert {k: v for k, v in second.items() if k != "closed_now"} == {
        k: v for k, v in first.items() if k != "closed_now"
    }
    assert Order.objects.filter(purpose=OrderPurpose.EXIT).count() == 1


@pytest.mark.django_db
def test_an_unknown_position_is_404(anon_client):
    response = anon_client.post("/positions/424242/close")
    assert response.status_code == 404 and response.json()["error"] == "position_not_found"


@pytest.mark.django_db
def test_no_usable_price_closes_nothing_and_says_503(anon_client, monkeypatch):
    def broken(self, symbol):
        raise QuoteError(symbol, "exchange timed out")

    monkeypatch.setattr("pricing.sources.simulator.SimulatorSource.get_quote", broken)
    position = open_position()
    response = anon_client.post(f"/positions/{position.pk}/close")
    assert response.status_code == 503 and "exchange timed out" in response.json()["detail"]
    position.refresh_from_db()
    assert position.status == PositionStatus.OPEN


@pytest.mark.django_db
def test_fees_on_entry_and_exit_and_slippage_against_the_position(settings):
    settings.PAPER_FEE_RATE = Decimal("0.001")
    settings.PAPER_SLIPPAGE_BPS = Decimal("10")
    position = open_position(entry="100", qty="2", fee=Decimal("0.2"))  # entry fee 100*2*0.001
    result = position_close(position=position, price=Decimal("110"), reason="tp")
    closed = Position.objects.get(pk=position.pk)
    assert closed.close_price == Decimal("109.89")  # 110 - 10 bps
    assert closed.fee == Decimal("0.2") + Decimal("0.21978")
    assert closed.pnl == (Decimal("109.89") - 100) * 2 - closed.fee
    assert result.closed_now


@pytest.mark.django_db
def test_close_all_closes_every_open_position_with_reason_panic(dummy_prices):
    for symbol in ("BTCUSDT", "ETHUSDT", "BTCUSDT"):
        open_position(symbol=symbol)
    result = positions_close_all()
    assert len(result.closed) == 3 and result.failed == {}
    assert set(Position.objects.values_list("status", "auto_close_reason")) == {("closed", "panic")}


@pytest.mark.django_db
def test_close_all_leaves_symbols_without_a_quote_open(monkeypatch, dummy_prices):
    original = DummySource.get_quote

    def flaky(self, symbol):
        if symbol == "ETHUSDT":
            raise QuoteError(symbol, "HTTP 502")
        return original(self, symbol)

    monkeypatch.setattr(DummySource, "get_quote", flaky)
    open_position(symbol="BTCUSDT")
    eth = open_position(symbol="ETHUSDT")
    result = positions_close_all()
    assert len(result.closed) == 1 and result.failed == {"ETHUSDT": "HTTP 502"}
    eth.refresh_from_db()
    assert eth.status == PositionStatus.OPEN


@pytest.mark.django_db
def test_close_all_api_requires_the_typed_confirmation(anon_client, dummy_prices):
    open_position()
    assert anon_client.post("/positions/close-all", data={"confirm": "yes"}, format="json").status_code == 400
    assert Position.objects.get().status == PositionStatus.OPEN
    response = anon_client.post("/positions/close-all", data={"confirm": "CLOSE ALL"}, format="json")
    assert response.json()["closed"] == 1


@pytest.mark.django_db(transaction=True)
def test_racing_closes_book_exactly_one_close_and_one_pnl():
    position = open_position(entry="100")

    def close(price: str) -> bool:
        fresh = Position.objects.get(pk=position.pk)
        return position_close(position=fresh, price=Decimal(price), reason="manual").closed_now

    outcomes = run_together([lambda i=i: close(str(100 + i)) for i in range(8)])
    assert outcomes.count(True) == 1 and len(outcomes) == 8
    closed = Position.objects.get(pk=position.pk)
    assert closed.pnl == closed.close_price - Decimal("100")
    assert Order.objects.filter(position=position, purpose=OrderPurpose.EXIT).count() == 1
