"""Auto-close on a REAL django-q cluster (and the real server), against a temporary SQLite file.

What it proves: sweeps continue across hand-overs between loop tasks with no overlap and no gap
beyond 2 × interval + 1 s; a worker killed with SIGKILL mid-run is replaced, sweeps resume, and
no position is left half-closed; a signal's position closes by itself with the right PnL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support import free_port, sqlite_process_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

INTERVAL = 1.0
LOOP_SEC = 4.0
LEASE_SEC = 2.0

SEED_POSITIONS = """
from datetime import timedelta
from decimal import Decimal as D
from django.utils import timezone
from oms.models import Position
created = timezone.now() - timedelta(minutes=1)
rows = []
for i in range(300):
    w = D("5") + D(i % 100) * D("0.05")  # 5 .. 9.95 away from 100: the simulator (100 ± 10) hits some each sweep
    long = i % 2 == 0
    rows.append(Position(exchange="bitget", symbol=f"S{i % 5}USDT", side="long" if long else "short", qty=D("2"),
                         entry_price=D("100"), tp_price=100 + w if long else 100 - w,
                         sl_price=100 - w if long else 100 + w, created_at=created))
Position.objects.bulk_create(rows)
"""


def base_env(db: Path, **extra: str) -> dict[str, str]:
    return sqlite_process_env(db, PRICE_SOURCE="simulator", PYTHONUNBUFFERED="1", **extra)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("template") / "loms.sqlite3"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=base_env(db),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return db


def fresh_db(migrated: Path, tmp_path: Path) -> Path:
    db = tmp_path / "loms.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{migrated}{suffix}").exists():
            shutil.copy(f"{migrated}{suffix}", f"{db}{suffix}")
    return db


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # A session of its own, so the test can stop the whole process tree it started.
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


def stop_serve(process: subprocess.Popen) -> None:
    """`serve` runs web and cluster in sessions of their own: ask it to stop them, then make sure."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stop(process)


def query(db: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql, params).fetchall()


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def sweep_runs(db: Path) -> list[tuple[float, float, str]]:
    return [
        (ts(a), ts(b), owner)
        for a, b, owner in query(db, "SELECT started_at, finished_at, owner FROM oms_sweeprun ORDER BY started_at")
    ]


def wait_until(condition, timeout: float, what: str, process: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert process.poll() is None, f"process exited early:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-3000:]}")


def assert_book_consistent(db: Path) -> tuple[int, int]:
    """Closed positions have exactly one exit order at their close price and the PnL of that price;
    open ones have none. Returns (closed, open)."""
    positions = query(
        db,
        "SELECT id, status, side, qty, entry_price, tp_price, sl_price, close_price, pnl, "
        "auto_close_reason, closed_at FROM oms_position",
    )
    exits = dict(query(db, "SELECT position_id, COUNT(*) FROM oms_order WHERE purpose = 'exit' GROUP BY position_id"))
    exit_prices = dict(query(db, "SELECT position_id, price FROM oms_order WHERE purpose = 'exit'"))
    closed = 0
    for pid, status, side, qty, entry, tp, sl, close, pnl, reason, closed_at in positions:
        if status == "open":
            assert exits.get(pid, 0) == 0 and close is None and pnl is None and closed_at is None
            continue
        closed += 1
        assert exits.get(pid) == 1, f"position {pid}: {exits.get(pid)} exit orders"
        qty, entry, close, pnl = (Decimal(str(v)) for v in (qty, entry, close, pnl))
        gross = (close - entry) * qty if side == "long" else (entry - close) * qty
        assert abs(pnl - gross) < Decimal("1e-6") and abs(Decimal(str(exit_prices[pid])) - close) < Decimal("1e-9")
        up = side == "long"
        if reason == "tp":
            assert close >= Decimal(str(tp)) if up else close <= Decimal(str(tp))
        else:
            assert reason == "sl" and (close <= Decimal(str(sl)) if up else close >= Decimal(str(sl)))
    return closed, len(positions) - closed


def test_two_real_clusters_sweep_without_overlap_or_gaps_across_hand_overs_and_a_killed_worker(migrated, tmp_path):
    db = fresh_db(migrated, tmp_path)
    env = base_env(
        db,
        AUTO_CLOSE_INTERVAL_SEC=str(INTERVAL),
        AUTO_CLOSE_LOOP_SEC=str(LOOP_SEC),
        AUTO_CLOSE_LEASE_SEC=str(LEASE_SEC),
        MIN_POSITION_AGE_SEC="0",
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SEED_POSITIONS],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    log = tmp_path / "qcluster.log"
    cluster = start(["qcluster"], env, log)
    other_cluster = start(["qcluster"], env, tmp_path / "qcluster-2.log")  # competes for the same lease
    try:
        # Run past at least one hand-over between loop tasks.
        wait_until(
            lambda: len({o for _, _, o in sweep_runs(db)}) >= 2 and len(sweep_runs(db)) >= LOOP_SEC + 3,
            40,
            "a hand-over",
            cluster,
            log,
        )
        holder_pid = wait_until(
            lambda: query(db, "SELECT lease_pid FROM oms_autoclosemonitor")[0][0],
            10,
            "a lease holder pid",
            cluster,
            log,
        )
        assert holder_pid not in (cluster.pid, other_cluster.pid)
        os.kill(holder_pid, signal.SIGKILL)
        killed_at = time.time()
        wait_until(
            lambda: len([r for r in sweep_runs(db) if r[0] > killed_at]) >= LOOP_SEC + 3,
            40,
            "sweeps to resume and hand over again",
            cluster,
            log,
        )
        assert other_cluster.poll() is None
    finally:
        stop(cluster)
        stop(other_cluster)

    runs = sweep_runs(db)
    for (_, end_a, _), (start_b, _, _) in zip(runs, runs[1:], strict=False):
        assert end_a <= start_b, "two sweeps overlapped"
    before = [r for r in runs if r[1] <= killed_at]
    after = [r for r in runs if r[0] > killed_at]
    steady_gaps = [b[0] - a[0] for part in (before, after) for a, b in zip(part, part[1:], strict=False)]
    assert max(steady_gaps) <= 2 * INTERVAL + 1, steady_gaps
    assert len({o for *_, o in before}) >= 2 and len({o for *_, o in after}) >= 2  # hand-overs on both sides
    assert all(f":{holder_pid}" not in o for *_, o in after)  # sweeps resumed elsewhere
    # The killed worker's lease lapses LEASE_SEC + INTERVAL after its last renewal; a watcher then takes over.
    assert after[0][0] - before[-1][0] <= LEASE_SEC + 2 * INTERVAL + 3
    closed, still_open = assert_book_consistent(db)
    assert closed > 0 and still_open > 0
    [(positions_closed, sweeps)] = query(db, "SELECT positions_closed, sweeps FROM oms_autoclosemonitor")
    assert positions_closed == closed and sweeps == len(runs)


def port_open(port: int) -> bool:
    """A bare TCP connect: no HTTP request reaches the application."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_a_long_signal_through_the_real_server_closes_by_itself_with_the_right_pnl(migrated, tmp_path):
    db = fresh_db(migrated, tmp_path)
    min_age = 3
    env = base_env(db, AUTO_CLOSE_INTERVAL_SEC="0.5", MIN_POSITION_AGE_SEC=str(min_age), GUNICORN_WORKERS="1")
    port = free_port()
    log = tmp_path / "serve.log"
    server = start(["serve", "--bind", f"127.0.0.1:{port}"], env, log)
    try:
        wait_until(lambda: port_open(port), 40, "the web server", server, log)
        wait_until(lambda: query(db, "SELECT COUNT(*) FROM oms_sweeprun")[0][0] > 0, 40, "the first sweep", server, log)
        body = {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "price": 100.0,
            "timestamp": "2025-06-19T10:00:00Z",
            "tp_pct": 4.5,
            "sl_pct": 1.5,
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/signals/bounce",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            position_id = json.loads(response.read())["position_id"]
        sent_at = time.monotonic()
        sql = (
            "SELECT status, auto_close_reason, close_price, pnl, qty, entry_price, tp_price, sl_price, created_at, "
            "closed_at FROM oms_position WHERE id = ? AND status = 'closed'"
        )
        row = wait_until(lambda: query(db, sql, position_id), min_age + 5, "the position to close", server, log)
        assert time.monotonic() - sent_at <= min_age + 5
    finally:
        stop_serve(server)
    [(status, reason, close, pnl, qty, entry, tp, sl, created_at, closed_at)] = row
    close, pnl, qty = Decimal(str(close)), Decimal(str(pnl)), Decimal(str(qty))
    levels = tuple(Decimal(str(v)) for v in (entry, tp, sl))
    assert levels == (Decimal("100"), Decimal("104.5"), Decimal("98.5"))
    assert reason in ("tp", "sl")
    assert close >= Decimal("104.5") if reason == "tp" else close <= Decimal("98.5")
    assert abs(pnl - (close - 100) * qty) < Decimal("1e-6")
    assert min_age <= ts(closed_at) - ts(created_at) <= min_age + 5
    assert query(db, "SELECT COUNT(*) FROM oms_order WHERE position_id = ? AND purpose = 'exit'", position_id) == [(1,)]
