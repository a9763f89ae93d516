from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from responses import matchers

from pricing.quotes import PriceMode, QuoteError, select_price
from pricing.sources.bybit import BybitSource
from pricing.tests.conftest import fixed_clock, recorded, with_symbols

BASE = "https://bybit.test"
TICKERS = f"{BASE}/v5/market/tickers"


def bybit(category: str = "linear", **kwargs) -> BybitSource:
    options = {"base_url": BASE, "timeout": 2.5, "max_age_sec": 30, "clock": fixed_clock(), **kwargs}
    return BybitSource(category=category, **options)


def test_a_linear_ticker_gives_bid_ask_last_and_mark_exactly(http):
    http.get(
        TICKERS,
        json=recorded("bybit_linear_tickers_BTCUSDT"),
        match=[matchers.query_param_matcher({"category": "linear", "symbol": "BTCUSDT"})],
    )

    quote = bybit().get_quote("BTCUSDT")

    assert (quote.bid, quote.ask, quote.last, quote.mark) == (
        Decimal("104815.20"),
        Decimal("104815.30"),
        Decimal("104815.30"),
        Decimal("104816.87"),
    )
    assert quote.ts == datetime(2025, 6, 19, 11, 23, 30, 415000, tzinfo=UTC)
    assert quote.symbol == "BTCUSDT"
    assert quote.source == "bybit"


def test_a_spot_ticker_has_no_mark_price(http):
    http.get(
        TICKERS,
        json=recorded("bybit_spot_tickers_BTCUSDT"),
        match=[matchers.query_param_matcher({"category": "spot", "symbol": "BTCUSDT"})],
    )

    quote = bybit("spot").get_quote("BTCUSDT")

    assert (quote.bid, quote.ask, quote.last, quote.mark) == (
        Decimal("104823.49"),
        Decimal("104823.62"),
        Decimal("104823.62"),
        None,
    )
    assert quote.ts == datetime(2025, 6, 19, 11, 23, 30, 412000, tzinfo=UTC)


def test_mark_mode_on_a_spot_quote_is_an_error_not_a_fallback(http):
    http.get(TICKERS, json=recorded("bybit_spot_tickers_BTCUSDT"))
    quote = bybit("spot", mode=PriceMode.MARK).get_quote("BTCUSDT")

    with pytest.raises(QuoteError, match="mark"):
        select_price(quote)
    assert select_price(quote, PriceMode.LAST) == Decimal("104823.62")


def test_the_quote_carries_the_configured_price_mode(http):
    http.get(TICKERS, json=recorded("bybit_linear_tickers_BTCUSDT"))

    quote = bybit(mode=PriceMode.MID).get_quote("BTCUSDT")

    assert quote.mode is PriceMode.MID
    assert select_price(quote) == Decimal("104815.25")


def test_requests_use_the_configured_timeout_and_one_session(http):
    http.get(TICKERS, json=recorded("bybit_linear_tickers_BTCUSDT"))
    http.get(TICKERS, json=recorded("bybit_linear_tickers_BTCUSDT"))
    source = bybit()
    session = source.session

    source.get_quote("BTCUSDT")
    source.get_quote("BTCUSDT")

    assert source.session is session
    assert [call.request.req_kwargs["timeout"] for call in http.calls] == [2.5, 2.5]


def test_a_base_url_with_a_trailing_slash_is_accepted(http):
    http.get(TICKERS, json=recorded("bybit_linear_tickers_BTCUSDT"))

    assert bybit(base_url=BASE + "/").get_quote("BTCUSDT").last == Decimal("104815.30")


def test_many_symbols_are_fetched_with_one_request_for_the_whole_category(http):
    body = with_symbols(recorded("bybit_linear_tickers_BTCUSDT"), ["ETHUSDT", "BTCUSDT", "SOLUSDT", "XRPUSDT"])
    http.get(TICKERS, json=body, match=[matchers.query_param_matcher({"category": "linear"})])

    quotes = bybit().get_quotes(["BTCUSDT", "SOLUSDT", "BTCUSDT", "DOGEUSDT", "ETHUSDT"])

    assert len(http.calls) == 1
    assert list(quotes) == ["BTCUSDT", "SOLUSDT", "DOGEUSDT", "ETHUSDT"]
    assert quotes["SOLUSDT"].symbol == "SOLUSDT"
    assert quotes["ETHUSDT"].last == Decimal("104815.30")
    assert isinstance(quotes["DOGEUSDT"], QuoteError)
    assert "missing" in quotes["DOGEUSDT"].reason


def test_a_single_symbol_batch_uses_the_per_symbol_request(http):
    http.get(
        TICKERS,
        json=recorded("bybit_linear_tickers_BTCUSDT"),
        match=[matchers.query_param_matcher({"category": "linear", "symbol": "BTCUSDT"})],
    )

    quotes = bybit().get_quotes(symbol for symbol in ["BTCUSDT", "BTCUSDT"])

    assert list(quotes) == ["BTCUSDT"]
    assert quotes["BTCUSDT"].mark == Decimal("104816.87")


def test_no_symbols_means_no_request(http):
    assert bybit().get_quotes([]) == {}
    assert len(http.calls) == 0


def test_a_non_zero_ret_code_fails_every_symbol_whatever_the_message_says(http):
    body = {"retCode": 10001, "retMsg": "OK", "result": {}, "retExtInfo": {}, "time": 1750332210415}
    http.get(TICKERS, json=body)

    quotes = bybit().get_quotes(["BTCUSDT", "ETHUSDT"])

    assert all(isinstance(answer, QuoteError) for answer in quotes.values())
    assert "retCode 10001" in quotes["BTCUSDT"].reason


def test_a_zero_ret_code_with_an_alarming_message_is_still_a_good_answer(http):
    body = recorded("bybit_linear_tickers_BTCUSDT")
    body["retMsg"] = "error: symbol invalid"
    http.get(TICKERS, json=body)

    assert bybit().get_quote("BTCUSDT").last == Decimal("104815.30")


def test_a_missing_or_malformed_server_time_is_a_failed_quote(http):
    body = recorded("bybit_linear_tickers_BTCUSDT")
    body["time"] = "soon"
    http.get(TICKERS, json=body)

    with pytest.raises(QuoteError, match="time"):
        bybit().get_quote("BTCUSDT")


def test_an_answer_without_a_result_list_is_a_failed_quote(http):
    http.get(TICKERS, json={"retCode": 0, "retMsg": "OK", "result": {"category": "linear"}, "time": 1750332210415})

    with pytest.raises(QuoteError, match="result.list"):
        bybit().get_quote("BTCUSDT")


def test_an_unknown_category_is_refused_at_construction():
    with pytest.raises(ValueError, match="category"):
        bybit("inverse")
