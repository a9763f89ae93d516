"""Pricing test helpers: recorded exchange answers, a fixed clock, and HTTP that never leaves the process."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import responses

from pricing.sources import reset_price_source_cache

FIXTURES = Path(__file__).parent / "fixtures"
# The recorded answers were all taken at about this moment (see fixtures/README.md).
RECORDED_AT = datetime(2025, 6, 19, 11, 23, 30, 415000, tzinfo=UTC)


def recorded(name: str) -> dict:
    """A recorded exchange answer, e.g. recorded("bybit_linear_tickers_BTCUSDT")."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def with_symbols(body: dict, symbols: list[str]) -> dict:
    """The recorded answer with its single row repeated once per symbol (a category-wide answer)."""
    body = copy.deepcopy(body)
    rows = body["result"]["list"] if "result" in body else body["data"]
    template = rows[0]
    rows[:] = [{**template, "symbol": symbol} for symbol in symbols]
    return body


def stamped_now(body: dict) -> dict:
    """The recorded answer with its timestamps moved to now, for code that uses the real clock."""
    body = copy.deepcopy(body)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    if "time" in body:
        body["time"] = now_ms
    for row in body.get("data") or []:
        row["ts"] = str(now_ms)
    return body


def fixed_clock(seconds_after_recording: float = 1.0):
    moment = RECORDED_AT + timedelta(seconds=seconds_after_recording)
    return lambda: moment


@pytest.fixture(autouse=True)
def http():
    """Every pricing test runs with HTTP mocked: an unregistered URL is a connection error, never a real request."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture(autouse=True)
def _fresh_price_sources():
    reset_price_source_cache()
    yield
    reset_price_source_cache()
