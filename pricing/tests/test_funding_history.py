from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from responses import matchers

from pricing.funding import FundingError, funding_source_or_reason
from pricing.sources.bitget import BitgetSource
from pricing.sources.bybit import BybitSource
from pricing.tests.conftest import fixed_clock, recorded

BYBIT_HISTORY = "https://bybit.test/v5/market/funding/history"
BITGET_HISTORY = "https://bitget.test/api/v2/mix/market/history-fund-rate"
OPTIONS = {"timeout": 2.0, "max_age_sec": 30, "clock": fixed_clock()}


def at(hour: int, day: int = 19) -> datetime:
    return datetime(2025, 6, day, hour, tzinfo=UTC)


def test_bybit_linear_funding_history_is_read_oldest_first_with_exact_rates(http):
    http.get(
        BYBIT_HISTORY,
        json=recorded("bybit_linear_funding_history_BTCUSDT"),
        match=[matchers.query_param_matcher({"category": "linear", "symbol": "BTCUSDT", "limit": "100"})],
    )

    events = BybitSource(base_url="https://bybit.test", **OPTIONS).funding_history("BTCUSDT")

    assert [(e.symbol, e.time, e.rate) for e in events] == [
        ("BTCUSDT", at(16, day=18), Decimal("0.00005217")),
        ("BTCUSDT", at(0), Decimal("-0.00002731")),
        ("BTCUSDT", at(8), Decimal("0.0001")),
    ]


def test_bitget_usdt_futures_funding_history_is_read_oldest_first_with_exact_rates(http):
    http.get(
        BITGET_HISTORY,
        json=recorded("bitget_mix_history_fund_rate_BTCUSDT"),
        match=[matchers.query_param_matcher({"symbol": "BTCUSDT", "productType": "USDT-FUTURES", "pageSize": "100"})],
    )

    events = BitgetSource(base_url="https://bitget.test", **OPTIONS).funding_history("BTCUSDT")

    assert [(e.time, e.rate) for e in events] == [
        (at(16, day=18), Decimal("0.000049")),
        (at(0), Decimal("-0.000031")),
        (at(8), Decimal("0.0001")),
    ]


def test_a_bybit_error_code_is_a_funding_error(http):
    http.get(BYBIT_HISTORY, json={"retCode": 10001, "retMsg": "params error", "result": {}, "time": 1750332210415})

    with pytest.raises(FundingError, match="retCode 10001"):
        BybitSource(base_url="https://bybit.test", **OPTIONS).funding_history("NOPEUSDT")


def test_a_bitget_http_400_is_a_funding_error(http):
    http.get(BITGET_HISTORY, status=400, json={"code": "40034", "msg": "Parameter does not exist", "data": None})

    with pytest.raises(FundingError, match="HTTP 400"):
        BitgetSource(base_url="https://bitget.test", **OPTIONS).funding_history("NOPEUSDT")


@pytest.mark.parametrize("rate", ["", "abc", "NaN", "1.5", None])
def test_an_unusable_rate_is_a_funding_error_not_a_zero(http, rate):
    body = recorded("bybit_linear_funding_history_BTCUSDT")
    body["result"]["list"][1]["fundingRate"] = rate
    http.get(BYBIT_HISTORY, json=body)

    with pytest.raises(FundingError, match="fundingRate"):
        BybitSource(base_url="https://bybit.test", **OPTIONS).funding_history("BTCUSDT")


def test_a_row_of_another_symbol_is_refused(http):
    body = recorded("bitget_mix_history_fund_rate_BTCUSDT")
    body["data"][0]["symbol"] = "ETHUSDT"
    http.get(BITGET_HISTORY, json=body)

    with pytest.raises(FundingError, match="unexpected row"):
        BitgetSource(base_url="https://bitget.test", **OPTIONS).funding_history("BTCUSDT")


def test_a_bad_funding_time_is_a_funding_error(http):
    body = recorded("bybit_linear_funding_history_BTCUSDT")
    body["result"]["list"][0]["fundingRateTimestamp"] = "yesterday"
    http.get(BYBIT_HISTORY, json=body)

    with pytest.raises(FundingError, match="funding time"):
        BybitSource(base_url="https://bybit.test", **OPTIONS).funding_history("BTCUSDT")


def test_perpetuals_have_funding_and_spot_has_none():
    assert BybitSource(base_url="https://bybit.test", category="linear", **OPTIONS).has_funding
    assert not BybitSource(base_url="https://bybit.test", category="spot", **OPTIONS).has_funding
    assert BitgetSource(base_url="https://bitget.test", product="usdt-futures", **OPTIONS).has_funding
    assert not BitgetSource(base_url="https://bitget.test", product="spot", **OPTIONS).has_funding


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"PRICE_SOURCE": "simulator"}, "PRICE_SOURCE=simulator"),
        ({"PRICE_SOURCE": "exchange", "PRICE_EXCHANGE": "dummy"}, "PRICE_EXCHANGE=dummy"),
        ({"PRICE_SOURCE": "exchange", "PRICE_EXCHANGE": "bybit", "BYBIT_CATEGORY": "spot"}, "spot"),
        ({"PRICE_SOURCE": "exchange", "PRICE_EXCHANGE": "bitget", "BITGET_PRODUCT": "spot"}, "spot"),
        ({"PRICE_SOURCE": "exchange", "PRICE_EXCHANGE": "bybit", "PAPER_FUNDING": False}, "PAPER_FUNDING is off"),
    ],
)
def test_funding_is_off_without_an_exchange_perpetual_price_source(settings, overrides, why):
    for key, value in overrides.items():
        setattr(settings, key, value)

    source, reason = funding_source_or_reason()

    assert source is None
    assert why in reason


def test_funding_is_on_for_bybit_linear_prices(settings):
    settings.PRICE_SOURCE, settings.PRICE_EXCHANGE, settings.BYBIT_CATEGORY = "exchange", "bybit", "linear"
    settings.PAPER_FUNDING = True

    source, reason = funding_source_or_reason()

    assert isinstance(source, BybitSource) and reason == ""
