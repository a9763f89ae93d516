"""Every way an exchange answer can go wrong ends as a QuoteError for the symbols concerned."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
import requests

from pricing.quotes import QuoteError
from pricing.sources.bitget import BitgetSource
from pricing.sources.bybit import BybitSource
from pricing.sources.http import ExchangeTickerSource
from pricing.tests.conftest import fixed_clock, recorded, with_symbols


@dataclass(frozen=True)
class Exchange:
    name: str
    single_url: str
    batch_url: str
    fixture: str
    price_fields: tuple[str, str, str, str]  # bid, ask, last, mark

    def source(self, seconds_after_recording: float = 1.0) -> ExchangeTickerSource:
        options = {"timeout": 1.0, "max_age_sec": 30, "clock": fixed_clock(seconds_after_recording)}
        if self.name == "bybit":
            return BybitSource(base_url="https://bybit.test", category="linear", **options)
        return BitgetSource(base_url="https://bitget.test", product="usdt-futures", **options)

    def body(self) -> dict:
        return recorded(self.fixture)

    @staticmethod
    def row(body: dict) -> dict:
        return body["result"]["list"][0] if "result" in body else body["data"][0]


BYBIT = Exchange(
    "bybit",
    "https://bybit.test/v5/market/tickers",
    "https://bybit.test/v5/market/tickers",
    "bybit_linear_tickers_BTCUSDT",
    ("bid1Price", "ask1Price", "lastPrice", "markPrice"),
)
BITGET = Exchange(
    "bitget",
    "https://bitget.test/api/v2/mix/market/ticker",
    "https://bitget.test/api/v2/mix/market/tickers",
    "bitget_mix_ticker_BTCUSDT",
    ("bidPr", "askPr", "lastPr", "markPrice"),
)
EXCHANGES = pytest.mark.parametrize("exchange", [BYBIT, BITGET], ids=lambda exchange: exchange.name)


def failure(exchange: Exchange, symbol: str = "BTCUSDT") -> QuoteError:
    """The QuoteError that get_quote raises for `symbol`."""
    with pytest.raises(QuoteError) as caught:
        exchange.source().get_quote(symbol)
    assert caught.value.symbol == symbol
    return caught.value


@EXCHANGES
def test_a_connection_error_is_a_failed_quote(http, exchange):
    http.get(exchange.single_url, body=requests.exceptions.ConnectionError("refused"))

    assert "connection error" in failure(exchange).reason


@EXCHANGES
@pytest.mark.parametrize("timeout", [requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout])
def test_a_timeout_is_a_failed_quote(http, exchange, timeout):
    http.get(exchange.single_url, body=timeout("slow"))

    assert "timeout after 1s" in failure(exchange).reason


@EXCHANGES
def test_an_unmocked_url_never_reaches_the_internet_and_fails_the_quote(http, exchange):
    assert "connection error" in failure(exchange).reason
    assert len(http.calls) == 1


@EXCHANGES
@pytest.mark.parametrize("status", [404, 429, 500, 503])
def test_a_non_2xx_status_is_a_failed_quote_even_with_a_good_body(http, exchange, status):
    http.get(exchange.single_url, status=status, json=exchange.body())

    assert f"HTTP {status}" in failure(exchange).reason


@EXCHANGES
def test_a_non_json_body_is_a_failed_quote(http, exchange):
    http.get(exchange.single_url, body="<html>gateway</html>", content_type="text/html")

    assert "not JSON" in failure(exchange).reason


@EXCHANGES
def test_a_json_body_that_is_not_an_object_is_a_failed_quote(http, exchange):
    http.get(exchange.single_url, json=[exchange.body()])

    assert "not an object" in failure(exchange).reason


@EXCHANGES
def test_a_symbol_missing_from_the_answer_is_a_failed_quote(http, exchange):
    http.get(exchange.single_url, json=with_symbols(exchange.body(), ["ETHUSDT"]))

    assert "missing" in failure(exchange).reason


@EXCHANGES
def test_an_empty_ticker_list_is_a_failed_quote(http, exchange):
    http.get(exchange.single_url, json=with_symbols(exchange.body(), []))

    assert "missing" in failure(exchange).reason


@EXCHANGES
@pytest.mark.parametrize("field_index", [0, 1, 2, 3], ids=["bid", "ask", "last", "mark"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("0", "not positive"),
        ("0.00", "not positive"),
        ("-104815.2", "not positive"),
        ("abc", "not a number"),
        ("1,5", "not a number"),
        ("NaN", "not a finite number"),
        ("Infinity", "not a finite number"),
        (True, "not a number"),
        ({"price": "1"}, "not a number"),
    ],
)
def test_a_bad_price_is_a_failed_quote(http, exchange, field_index, value, reason):
    body = exchange.body()
    field = exchange.price_fields[field_index]
    exchange.row(body)[field] = value
    http.get(exchange.single_url, json=body)

    error = failure(exchange)

    assert field in error.reason and reason in error.reason


@EXCHANGES
@pytest.mark.parametrize("field_index", [0, 1, 2], ids=["bid", "ask", "last"])
def test_a_missing_bid_ask_or_last_is_a_failed_quote(http, exchange, field_index):
    body = exchange.body()
    field = exchange.price_fields[field_index]
    del exchange.row(body)[field]
    http.get(exchange.single_url, json=body)

    assert f"{field} missing" in failure(exchange).reason


@EXCHANGES
def test_a_missing_mark_price_leaves_mark_empty_rather_than_failing(http, exchange):
    body = exchange.body()
    del exchange.row(body)[exchange.price_fields[3]]
    http.get(exchange.single_url, json=body)

    quote = exchange.source().get_quote("BTCUSDT")

    assert quote.mark is None
    assert quote.last is not None


@EXCHANGES
def test_a_quote_older_than_the_maximum_age_is_a_failed_quote(http, exchange):
    http.get(exchange.single_url, json=exchange.body())

    with pytest.raises(QuoteError, match="stale quote") as caught:
        exchange.source(seconds_after_recording=31).get_quote("BTCUSDT")
    assert "limit 30s" in caught.value.reason


@EXCHANGES
def test_a_quote_just_within_the_maximum_age_is_good(http, exchange):
    http.get(exchange.single_url, json=exchange.body())

    quote = exchange.source(seconds_after_recording=29).get_quote("BTCUSDT")

    assert quote.last > Decimal("0")


@EXCHANGES
def test_one_bad_row_in_a_batch_fails_only_its_own_symbol(http, exchange):
    body = with_symbols(exchange.body(), ["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    rows = body["result"]["list"] if "result" in body else body["data"]
    rows[1][exchange.price_fields[2]] = "0"
    http.get(exchange.batch_url, json=body)

    quotes = exchange.source().get_quotes(["BTCUSDT", "ETHUSDT", "SOLUSDT"])

    assert isinstance(quotes["ETHUSDT"], QuoteError)
    assert not isinstance(quotes["BTCUSDT"], QuoteError)
    assert not isinstance(quotes["SOLUSDT"], QuoteError)


@EXCHANGES
def test_a_failed_batch_request_fails_every_symbol_with_its_own_error(http, exchange):
    http.get(exchange.batch_url, body=requests.exceptions.ReadTimeout("slow"))

    quotes = exchange.source().get_quotes(["BTCUSDT", "ETHUSDT"])

    assert {symbol: answer.symbol for symbol, answer in quotes.items()} == {"BTCUSDT": "BTCUSDT", "ETHUSDT": "ETHUSDT"}
    assert all("timeout" in answer.reason for answer in quotes.values())


@EXCHANGES
def test_an_unexpected_error_while_parsing_is_still_only_a_failed_quote(http, exchange, monkeypatch):
    http.get(exchange.single_url, json=exchange.body())
    source = exchange.source()

    def broken(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(source, "row_quote", broken)

    with pytest.raises(QuoteError, match="unexpected error"):
        source.get_quote("BTCUSDT")
