"""The sweep against the real Bybit source, served by a local HTTP server that misbehaves."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from oms.models import AutoCloseMonitor, Position
from oms.services.sweep import auto_close_sweep
from oms.tests.factories import open_position
from pricing.sources import reset_price_source_cache

pytestmark = pytest.mark.django_db


class Exchange:
    """A local Bybit V5 tickers endpoint: `rows` is what it answers, `delay` how long it stalls."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.delay = 0.0
        self.requests: list[str] = []
        exchange = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                exchange.requests.append(self.path)
                time.sleep(exchange.delay)
                body = json.dumps(
                    {
                        "retCode": 0,
                        "retMsg": "OK",
                        "time": int(time.time() * 1000),
                        "result": {"category": "linear", "list": exchange.rows},
                    }
                ).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def exchange(settings):
    server = Exchange()
    settings.PRICE_SOURCE, settings.PRICE_EXCHANGE = "exchange", "bybit"
    settings.BYBIT_BASE_URL, settings.BYBIT_CATEGORY = server.url, "linear"
    settings.PRICE_HTTP_TIMEOUT = 0.5
    reset_price_source_cache()
    yield server
    server.server.shutdown()
    server.server.server_close()
    reset_price_source_cache()


def ticker(symbol: str, last: str) -> dict:
    return {"symbol": symbol, "lastPrice": last, "bid1Price": last, "ask1Price": last, "markPrice": last}


def aged(**fields) -> Position:
    return open_position(created_at=timezone.now() - timedelta(minutes=5), **fields)


def test_an_exchange_error_for_one_symbol_leaves_its_positions_open_while_others_close(exchange):
    btc = [aged(symbol="BTCUSDT") for _ in range(3)]
    eth = aged(symbol="ETHUSDT")
    sol = aged(symbol="SOLUSDT")
    exchange.rows = [ticker("BTCUSDT", "110"), ticker("ETHUSDT", ""), ticker("XRPUSDT", "0.5")]  # SOL missing
    result = auto_close_sweep()
    assert {p.pk for p in result.closed} == {p.pk for p in btc}
    assert {p.status for p in Position.objects.filter(pk__in=[eth.pk, sol.pk])} == {"open"}
    assert set(result.failed) == {"ETHUSDT", "SOLUSDT"}
    assert len(exchange.requests) == 1  # one request for every symbol of the sweep
    assert Position.objects.get(pk=btc[0].pk).close_price == D("110")
    assert set(AutoCloseMonitor.load().quote_failures) == {"ETHUSDT", "SOLUSDT"}


def test_an_exchange_that_times_out_closes_nothing_and_the_sweep_survives(exchange):
    position = aged(symbol="BTCUSDT")
    exchange.rows = [ticker("BTCUSDT", "110")]
    exchange.delay = 1.5
    started = time.monotonic()
    result = auto_close_sweep()
    assert time.monotonic() - started < 1.4  # PRICE_HTTP_TIMEOUT, not the server's stall
    assert result.error == "" and result.closed == [] and "BTCUSDT" in result.failed
    position.refresh_from_db()
    assert position.status == "open"
    exchange.delay = 0
    assert [p.pk for p in auto_close_sweep().closed] == [position.pk]  # the next sweep recovers
