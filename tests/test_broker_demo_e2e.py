"""End to end in demo mode: `manage.py serve` (web + cluster) against the loopback stand-in exchange.

signal → market order with TP/SL on the exchange → the exchange's stop loss fires → the
reconciliation task closes the position in LOMS at the exchange's price → flatten.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.exchange_standin import StandIn
from tests.support import free_port, migrated_sqlite_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def demo_env(tmp: Path, standin: StandIn, **extra: str) -> dict:
    return migrated_sqlite_env(
        tmp,
        ENVIRONMENT="paper",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="false",
        BEHIND_TLS_PROXY="false",
        BROKER_MODE="demo",
        BROKER_EXCHANGE=standin.exchange,
        BITGET_BASE_URL=standin.url,
        BYBIT_BASE_URL=standin.url,
        BITGET_API_KEY=standin.api_key,
        BITGET_API_SECRET=standin.api_secret,
        BITGET_API_PASSPHRASE=standin.passphrase,
        BYBIT_API_KEY=standin.api_key,
        BYBIT_API_SECRET=standin.api_secret,
        SYMBOL_ALLOWLIST="BTCUSDT",
        PRICE_SOURCE="exchange",
        PRICE_EXCHANGE=standin.exchange,
        LIVE_MAX_NOTIONAL_USDT="100",
        MAX_SIGNAL_AGE_SEC="",
        MAX_SIGNAL_PRICE_DEVIATION_PCT="",
        RECONCILE_INTERVAL_SEC="10",
        GUNICORN_WORKERS="1",
        MIN_POSITION_AGE_SEC="3600",
        **extra,
    )


def manage(env: dict, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def standin():
    exchange = StandIn("bitget").start()
    yield exchange
    exchange.stop()


def test_serve_in_demo_mode_trades_on_the_exchange_reconciles_an_sl_hit_and_flattens(standin, tmp_path):
    env = demo_env(tmp_path, standin)
    token = manage(env, "create_api_token", "bot", "--role", "bot").stdout.strip()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "serve did not start"
                time.sleep(0.3)
        body = json.dumps(
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "price": 60000,
                "qty": 0.001,
                "tp_pct": 2,
                "sl_pct": 1,
                "timestamp": datetime.now(UTC).isoformat(),
            }
        ).encode()
        request = urllib.request.Request(
            f"{base}/signals/bounce",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
        )
        answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
        assert answer["risk_ok"] is True and answer["order_status"] == "filled", answer
        held = standin.positions["BTCUSDT"]
        assert (held.qty, held.tp, held.sl) == (Decimal("0.001"), Decimal("61200"), Decimal("59400"))
        assert all(r.signature_ok is True and r.headers.get("paptrading") == "1" for r in standin.private_requests)

        standin.trigger("BTCUSDT", "sl")  # the exchange's own stop loss fires
        db = tmp_path / "loms.sqlite3"
        deadline = time.monotonic() + 150
        while query(db, "SELECT status FROM oms_position")[0][0] == "open":
            assert time.monotonic() < deadline, "the reconciliation did not close the position"
            time.sleep(1)
        status, reason, close_price = query(db, "SELECT status, auto_close_reason, close_price FROM oms_position")[0]
        assert (status, reason, Decimal(str(close_price))) == ("closed", "exchange_sl", Decimal("59400"))
        health_request = urllib.request.Request(f"{base}/health", headers={"Authorization": f"Token {token}"})
        health = json.loads(urllib.request.urlopen(health_request, timeout=5).read())  # details: authenticated
        assert health["broker_mode"] == "demo" and health["reconciliation"]["state"] == "ok"
        assert not [reason for reason in health["reasons"] if reason["code"].startswith("reconciliation")]

        body = json.dumps(
            {
                "symbol": "BTCUSDT",
                "side": "SELL",
                "price": 60000,
                "qty": 0.001,
                "timestamp": datetime.now(UTC).isoformat(),
            }
        ).encode()
        request = urllib.request.Request(
            f"{base}/signals/bounce",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
        )
        assert json.loads(urllib.request.urlopen(request, timeout=30).read())["risk_ok"] is True
        assert standin.positions["BTCUSDT"].side == "short"
        started = time.monotonic()
        flat = manage(env, "flatten", "--yes")
        assert flat.returncode == 0, flat.stdout + flat.stderr
        assert "FLAT" in flat.stdout and standin.positions == {} and time.monotonic() - started < 60
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_refuses_to_start_in_demo_mode_when_the_preflight_fails_and_names_the_check(standin, tmp_path):
    standin.withdraw_permission = True
    env = demo_env(tmp_path, standin)
    done = subprocess.run(
        [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "not starting in BROKER_MODE=demo" in done.stderr and "no withdraw permission" in done.stderr
