from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pricing.quotes import PriceMode, PriceQuote, QuoteError, select_price
from pricing.sources.dummy import DummySource
from pricing.sources.simulator import SimulatorSource

TS = datetime(2025, 6, 19, 11, 23, 30, tzinfo=UTC)


def quote(**overrides) -> PriceQuote:
    values = {
        "symbol": "BTCUSDT",
        "ts": TS,
        "bid": Decimal("99.5"),
        "ask": Decimal("100.5"),
        "last": Decimal("100.1"),
        "mark": Decimal("100.2"),
        "source": "test",
    }
    return PriceQuote(**{**values, **overrides})


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (PriceMode.LAST, Decimal("100.1")),
        (PriceMode.BID, Decimal("99.5")),
        (PriceMode.ASK, Decimal("100.5")),
        (PriceMode.MID, Decimal("100.0")),
        (PriceMode.MARK, Decimal("100.2")),
        ("mark", Decimal("100.2")),
    ],
)
def test_select_price_picks_the_price_of_each_mode(mode, expected):
    assert select_price(quote(), mode) == expected


def test_select_price_defaults_to_the_quotes_own_mode():
    assert select_price(quote(mode=PriceMode.ASK)) == Decimal("100.5")


def test_mark_mode_on_a_quote_without_mark_is_an_error_naming_mode_and_source():
    spot = quote(mark=None, source="bybit")

    with pytest.raises(QuoteError) as caught:
        select_price(spot, PriceMode.MARK)

    assert caught.value.symbol == "BTCUSDT"
    assert "'mark' not available from bybit" in caught.value.reason


@pytest.mark.parametrize("missing", ["bid", "ask"])
def test_mid_mode_needs_both_bid_and_ask(missing):
    with pytest.raises(QuoteError, match="mid"):
        select_price(quote(**{missing: None}), PriceMode.MID)


@pytest.mark.parametrize("bad", [Decimal("0"), Decimal("-1"), Decimal("NaN")])
def test_select_price_refuses_a_non_positive_or_invalid_price(bad):
    with pytest.raises(QuoteError):
        select_price(quote(last=bad), PriceMode.LAST)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        select_price(quote(), "close")


def test_the_simulator_with_the_same_seed_gives_the_same_sequence():
    first = SimulatorSource(seed=42)
    second = SimulatorSource(seed=42)

    run_one = [first.get_quote(symbol).last for symbol in ["BTCUSDT", "ETHUSDT", "BTCUSDT"]]
    run_two = [second.get_quote(symbol).last for symbol in ["BTCUSDT", "ETHUSDT", "BTCUSDT"]]

    assert run_one == run_two
    assert len(set(run_one)) == 3


def test_different_seeds_give_different_simulated_prices():
    assert SimulatorSource(seed=1).get_quote("BTCUSDT").last != SimulatorSource(seed=2).get_quote("BTCUSDT").last


def test_simulated_prices_stay_within_ten_of_one_hundred_with_a_tight_spread():
    source = SimulatorSource(seed=7, mode=PriceMode.MID)
    quotes = [source.get_quote("BTCUSDT") for _ in range(500)]

    assert all(Decimal("90") <= q.last <= Decimal("110") for q in quotes)
    assert all(q.ask - q.bid == Decimal("0.02") and q.mode is PriceMode.MID for q in quotes)


def test_simulator_batches_give_one_quote_per_distinct_symbol():
    quotes = SimulatorSource(seed=3).get_quotes(["BTCUSDT", "ETHUSDT", "BTCUSDT"])

    assert list(quotes) == ["BTCUSDT", "ETHUSDT"]


def test_the_dummy_exchange_quotes_exactly_one_hundred():
    result = DummySource(mode=PriceMode.BID).get_quote("ETHUSDT")

    assert (result.bid, result.ask, result.last, result.mark) == (
        Decimal("99.95"),
        Decimal("100.05"),
        Decimal("100.00"),
        Decimal("100.00"),
    )
    assert select_price(result) == Decimal("99.95")
