"""The auto-close sweep against a misbehaving exchange (Bybit V5 tickers served by `responses`).

Whatever the answer — timeout, 5xx, an error code, HTML, an empty list, a negative, zero, empty or
stale price — for some or all symbols: no position closes on a bad price, the healthy symbols
still close, and /health reports the failures per symbol.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests
import responses
from django.utils import timezone

from oms.models import Order, OrderPurpose, Position, PositionStatus
from oms.services.health import health_report
from oms.services.sweep import auto_close_sweep
from oms.tests.factories import open_position
from pricing.sources import reset_price_source_cache

pytestmark = pytest.mark.django_db
TICKERS = "https://bybit.test/v5/market/tickers"
HEALTHY, SICK = "BTCUSDT", "ETHUSDT"


@pytest.fixture(autouse=True)
def bybit(settings):
    settings.PRICE_SOURCE, settings.PRICE_EXCHANGE, settings.PRICE_MODE = "exchange", "bybit", "last"
    settings.BYBIT_BASE_URL, settings.BYBIT_CATEGORY = "https://bybit.test", "linear"
    settings.PRICE_HTTP_TIMEOUT, settings.PRICE_MAX_AGE_SEC = 1.0, 30.0
    reset_price_source_cache()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
    reset_price_source_cache()


def row(symbol: str, last: str = "110") -> dict:
    return {"symbol": symbol, "bid1Price": last, "ask1Price": last, "lastPrice": last, "markPrice": last}


def envelope(rows: list[dict], *, age_sec: float = 0.5) -> dict:
    return {
        "retCode": 0,
        "retMsg": "OK",
        "result": {"category": "linear", "list": rows},
        "time": int((time.time() - age_sec) * 1000),
    }


def book() -> tuple[Position, Position]:
    """One long per symbol, both with TP 104.5: a good price of 110 closes them."""
    created = timezone.now() - timedelta(minutes=5)
    return open_position(symbol=HEALTHY, created_at=created), open_position(symbol=SICK, created_at=created)


def assert_no_close(position: Position) -> None:
    position.refresh_from_db()
    assert position.status == PositionStatus.OPEN and position.pnl is None
    assert not Order.objects.filter(position=position, purpose=OrderPurpose.EXIT).exists()


SOME_SYMBOLS = {
    "negative price": [row(HEALTHY), row(SICK, "-5")],
    "zero price": [row(HEALTHY), row(SICK, "0")],
    "empty price": [row(HEALTHY), row(SICK, "")],
    "not a number": [row(HEALTHY), row(SICK, "NaN")],
    "symbol missing from the answer": [row(HEALTHY)],
}


@pytest.mark.parametrize("case", SOME_SYMBOLS, ids=list(SOME_SYMBOLS))
def test_a_bad_price_for_one_symbol_keeps_it_open_while_the_healthy_symbol_closes(bybit, case):
    good, bad = book()
    bybit.get(TICKERS, json=envelope(SOME_SYMBOLS[case]))
    result = auto_close_sweep()
    good.refresh_from_db()
    assert good.status == PositionStatus.CLOSED and good.auto_close_reason == "tp"
    assert_no_close(bad)
    assert list(result.failed) == [SICK]
    failures = health_report()["auto_close"]["quote_failures"]
    assert list(failures) == [SICK] and failures[SICK]["count"] == 1 and failures[SICK]["last_error"]


ALL_SYMBOLS = {
    "timeout": {"body": requests.exceptions.ReadTimeout("read timed out")},
    "connection refused": {"body": requests.exceptions.ConnectionError("refused")},
    "HTTP 502": {"status": 502, "json": envelope([row(HEALTHY), row(SICK)])},
    "HTTP 503 HTML": {"status": 503, "body": "<html><body>Service Unavailable</body></html>"},
    "HTML with 200": {"status": 200, "body": "<!doctype html><html>maintenance</html>", "content_type": "text/html"},
    "exchange error code": {"json": {"retCode": 10006, "retMsg": "Too many visits!", "result": {}, "time": 0}},
    "empty list": {"json": envelope([])},
    "stale quotes": {"json": envelope([row(HEALTHY), row(SICK)], age_sec=120)},
}


@pytest.mark.parametrize("case", ALL_SYMBOLS, ids=list(ALL_SYMBOLS))
def test_a_failed_answer_closes_nothing_and_health_names_every_symbol(bybit, case):
    positions = book()
    bybit.get(TICKERS, **ALL_SYMBOLS[case])
    result = auto_close_sweep()
    for position in positions:
        assert_no_close(position)
    assert result.error == "" and sorted(result.failed) == [HEALTHY, SICK]
    report = health_report()
    assert sorted(report["auto_close"]["quote_failures"]) == [HEALTHY, SICK]
    assert report["auto_close"]["last_sweep_at"] is not None  # the sweep itself ran and was recorded


def test_when_the_exchange_recovers_the_positions_close_at_the_good_price(bybit):
    positions = book()
    bybit.get(TICKERS, status=500, body="oops")
    auto_close_sweep()
    bybit.replace(responses.GET, TICKERS, json=envelope([row(HEALTHY, "111"), row(SICK, "112")]))
    auto_close_sweep()
    for position, price in zip(positions, ("111", "112"), strict=True):
        position.refresh_from_db()
        assert position.status == PositionStatus.CLOSED and str(position.close_price.normalize()) == price
    assert len(bybit.calls) == 2  # one request per sweep for every symbol, never one per position
