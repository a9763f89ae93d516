from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from responses import matchers

from pricing.quotes import PriceMode, QuoteError, select_price
from pricing.sources.bitget import BitgetSource
from pricing.tests.conftest import fixed_clock, recorded, with_symbols

BASE = "https://bitget.test"
SPOT = f"{BASE}/api/v2/spot/market/tickers"
MIX_ONE = f"{BASE}/api/v2/mix/market/ticker"
MIX_ALL = f"{BASE}/api/v2/mix/market/tickers"


def bitget(product: str = "usdt-futures", **kwargs) -> BitgetSource:
    options = {"base_url": BASE, "timeout": 3.0, "max_age_sec": 30, "clock": fixed_clock(), **kwargs}
    return BitgetSource(product=product, **options)


def test_a_usdt_futures_ticker_gives_bid_ask_last_and_mark_exactly(http):
    http.get(
        MIX_ONE,
        json=recorded("bitget_mix_ticker_BTCUSDT"),
        match=[matchers.query_param_matcher({"symbol": "BTCUSDT", "productType": "USDT-FUTURES"})],
    )

    quote = bitget().get_quote("BTCUSDT")

    assert (quote.bid, quote.ask, quote.last, quote.mark) == (
        Decimal("104812.4"),
        Decimal("104812.5"),
        Decimal("104812.4"),
        Decimal("104812.6"),
    )
    assert quote.ts == datetime(2025, 6, 19, 11, 23, 30, 598000, tzinfo=UTC)
    assert quote.source == "bitget"


def test_a_spot_ticker_has_no_mark_price(http):
    http.get(
        SPOT,
        json=recorded("bitget_spot_tickers_BTCUSDT"),
        match=[matchers.query_param_matcher({"symbol": "BTCUSDT"})],
    )

    quote = bitget("spot").get_quote("BTCUSDT")

    assert (quote.bid, quote.ask, quote.last, quote.mark) == (
        Decimal("104830"),
        Decimal("104830.01"),
        Decimal("104830.01"),
        None,
    )
    assert quote.ts == datetime(2025, 6, 19, 11, 23, 30, 570000, tzinfo=UTC)


def test_mark_mode_on_a_spot_quote_is_an_error_not_a_fallback(http):
    http.get(SPOT, json=recorded("bitget_spot_tickers_BTCUSDT"))
    quote = bitget("spot", mode=PriceMode.MARK).get_quote("BTCUSDT")

    with pytest.raises(QuoteError, match="mark"):
        select_price(quote)


def test_many_futures_symbols_are_fetched_with_one_request_to_the_batch_endpoint(http):
    body = with_symbols(recorded("bitget_mix_ticker_BTCUSDT"), ["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    http.get(MIX_ALL, json=body, match=[matchers.query_param_matcher({"productType": "USDT-FUTURES"})])

    quotes = bitget().get_quotes(["ETHUSDT", "SOLUSDT", "ADAUSDT"])

    assert len(http.calls) == 1
    assert quotes["ETHUSDT"].mark == Decimal("104812.6")
    assert quotes["SOLUSDT"].bid == Decimal("104812.4")
    assert isinstance(quotes["ADAUSDT"], QuoteError)


def test_many_spot_symbols_are_fetched_with_one_request_without_symbol(http):
    body = with_symbols(recorded("bitget_spot_tickers_BTCUSDT"), ["BTCUSDT", "ETHUSDT"])
    http.get(SPOT, json=body, match=[matchers.query_param_matcher({})])

    quotes = bitget("spot").get_quotes(["BTCUSDT", "ETHUSDT"])

    assert len(http.calls) == 1
    assert quotes["BTCUSDT"].ask == Decimal("104830.01")
    assert quotes["ETHUSDT"].last == Decimal("104830.01")


def test_an_error_code_with_http_400_fails_the_quote_and_names_the_code(http):
    body = {"code": "40034", "msg": "Parameter does not exist", "requestTime": 1, "data": None}
    http.get(MIX_ONE, status=400, json=body)

    with pytest.raises(QuoteError) as caught:
        bitget().get_quote("NOPEUSDT")

    assert caught.value.symbol == "NOPEUSDT"
    assert "HTTP 400" in caught.value.reason and "40034" in caught.value.reason


def test_a_non_success_code_with_http_200_fails_every_symbol(http):
    http.get(MIX_ALL, json={"code": "40001", "msg": "success", "requestTime": 1, "data": []})

    quotes = bitget().get_quotes(["BTCUSDT", "ETHUSDT"])

    assert {symbol: type(answer) for symbol, answer in quotes.items()} == {
        "BTCUSDT": QuoteError,
        "ETHUSDT": QuoteError,
    }
    assert "40001" in quotes["ETHUSDT"].reason


def test_a_numeric_success_code_is_not_the_string_00000(http):
    body = recorded("bitget_mix_ticker_BTCUSDT")
    body["code"] = 0
    http.get(MIX_ONE, json=body)

    with pytest.raises(QuoteError, match="code"):
        bitget().get_quote("BTCUSDT")


def test_an_answer_without_a_data_list_is_a_failed_quote(http):
    http.get(MIX_ONE, json={"code": "00000", "msg": "success", "requestTime": 1, "data": None})

    with pytest.raises(QuoteError, match="data"):
        bitget().get_quote("BTCUSDT")


def test_a_row_without_a_timestamp_is_a_failed_quote(http):
    body = recorded("bitget_mix_ticker_BTCUSDT")
    del body["data"][0]["ts"]
    http.get(MIX_ONE, json=body)

    with pytest.raises(QuoteError, match="ts"):
        bitget().get_quote("BTCUSDT")


def test_an_unknown_product_is_refused_at_construction():
    with pytest.raises(ValueError, match="product"):
        bitget("coin-futures")
