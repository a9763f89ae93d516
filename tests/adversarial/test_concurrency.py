"""Bursts and races with real threads (each its own database connection) and a real served app.

Runs on the database of the suite: SQLite by default, PostgreSQL when DATABASE_URL says so (CI runs both).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import F, Sum
from django.utils import timezone

from oms.models import Order, OrderPurpose, Position, PositionStatus, Signal
from oms.services.positions import position_close_at_market
from oms.services.signals import signal_ingest
from oms.services.sweep import auto_close_sweep
from oms.tests.factories import open_position
from tests.support import free_port, run_together

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_fifty_way_burst_never_overshoots_the_total_exposure_limit(settings, signal_body):
    settings.MAX_TOTAL_EXPOSURE_USDT = Decimal("1000")  # 100 USDT each: room for exactly 10
    settings.DEFAULT_QTY = Decimal("1")
    bodies = [signal_body(symbol=f"X{i}USDT", price=100.0, signal_id=f"exp-{i}") for i in range(50)]
    results = run_together([lambda body=body: signal_ingest(payload=body).body for body in bodies])
    exposure = Position.objects.filter(status=PositionStatus.OPEN).aggregate(total=Sum(F("entry_price") * F("qty")))
    assert Position.objects.count() == 10 and exposure["total"] == Decimal("1000")
    assert Counter(r["risk_ok"] for r in results) == {True: 10, False: 40}
    assert {r["risk_reason"] for r in results if not r["risk_ok"]} and Signal.objects.count() == 50


def test_a_fifty_way_burst_with_all_three_limits_respects_each_of_them(settings, signal_body):
    settings.MAX_OPEN_POSITIONS = 12
    settings.MAX_OPEN_POSITIONS_PER_SYMBOL = 3
    settings.MAX_TOTAL_EXPOSURE_USDT = Decimal("1100")
    bodies = [signal_body(symbol=f"S{i % 5}USDT", price=100.0, signal_id=f"all-{i}") for i in range(50)]
    run_together([lambda body=body: signal_ingest(payload=body) for body in bodies])
    per_symbol = Counter(Position.objects.values_list("symbol", flat=True))
    assert sum(per_symbol.values()) == 11  # exposure binds first: 11 x 100 USDT
    assert max(per_symbol.values()) <= 3


def test_a_manual_close_racing_the_auto_close_books_exactly_one_close_and_one_pnl(settings):
    """Real threads: the sweep (price 100 hits every TP at 99.5) against manual closes, many times over."""
    settings.PRICE_SOURCE, settings.PRICE_EXCHANGE = "exchange", "dummy"  # a fixed 100.00 for both sides
    created = timezone.now() - timedelta(minutes=5)
    positions = [open_position(symbol=f"R{i % 4}USDT", tp="99.5", sl="50", created_at=created) for i in range(40)]
    calls = [lambda: [auto_close_sweep() for _ in range(3)]]
    calls += [lambda pk=p.pk: position_close_at_market(position_id=pk) for p in positions[::2]]
    run_together(calls)
    for position in Position.objects.filter(pk__in=[p.pk for p in positions]):
        exits = Order.objects.filter(position=position, purpose=OrderPurpose.EXIT)
        assert position.status == PositionStatus.CLOSED and exits.count() == 1, position
        assert position.auto_close_reason in ("tp", "manual")
        assert position.pnl == (position.close_price - position.entry_price) * position.qty - position.fee
        assert exits.get().price == position.close_price


# --- the same burst through the served application ------------------------------------------------


def _database_url() -> str:
    """The test database (already migrated), as a URL the server process can use."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"raw": exc.read()[:200].decode(errors="replace")}


@pytest.mark.slow
def test_a_fifty_way_http_burst_on_the_served_app_opens_exactly_the_limit_and_never_fails(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        LOMS_ENV_FILE="/nonexistent",
        DATABASE_URL=_database_url(),
        MAX_OPEN_POSITIONS="5",
        AUDIT_LOG_PATH=str(tmp_path / "audit.jsonl"),
        GUNICORN_WORKERS="3",
        GUNICORN_THREADS="4",
    )
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-cluster", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        bodies = [
            {
                "symbol": f"H{i}USDT",
                "side": "BUY",
                "price": 100.0,
                "timestamp": "2025-06-19T10:15:00Z",
                "signal_id": f"http-{i}",
            }
            for i in range(50)
        ]
        results = run_together([lambda body=body: _post(f"{base}/signals/bounce", body) for body in bodies])
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert Counter(status for status, _ in results) == {200: 50}
    assert Counter(body["risk_ok"] for _, body in results) == {True: 5, False: 45}
    assert Position.objects.filter(status=PositionStatus.OPEN).count() == 5
    assert Signal.objects.count() == 50
