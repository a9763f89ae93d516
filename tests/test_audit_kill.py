"""A server SIGKILLed in the middle of a burst owes no audit line once it is started again.

The window between a signal's commit and its audit append is tiny, so the test makes every request
of the burst stop in it, without touching the code: it holds the audit file's lock exclusively (as
a rotation does), so each worker commits its signal and then waits to append. The whole web server
is then killed with SIGKILL. Committed signals without a line are the defect (before the fix they
stayed missing); `manage.py serve` runs `audit_recover` at start-up, after which every committed
`Signal` row has exactly one line.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.support import free_port, migrated_sqlite_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def start_server(env: dict, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-cluster", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return process
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)


def post(port: int, body: dict, timeout: float = 60) -> int | None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/signals/bounce",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # the server was killed under this request
        return None


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def signal_ids(database: Path) -> list[int]:
    with sqlite3.connect(database) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM oms_signal ORDER BY id")]


def lines_per_signal(audit: Path) -> Counter:
    return Counter(
        json.loads(line)["signal_row_id"] for line in audit.read_text().splitlines() if '"signal_row_id"' in line
    )


def body(n: int, **overrides) -> dict:
    return {
        "symbol": f"K{n}USDT",
        "side": "BUY",
        "price": 100.0,
        "timestamp": "2025-06-19T10:15:00Z",
        "signal_id": f"kill-{n}",
        **overrides,
    }


def test_every_committed_signal_has_exactly_one_audit_line_after_a_sigkill_mid_burst(tmp_path):
    env = migrated_sqlite_env(tmp_path, GUNICORN_WORKERS="2", GUNICORN_THREADS="10")
    database, audit = tmp_path / "loms.sqlite3", Path(env["AUDIT_LOG_PATH"])
    port = free_port()
    server = start_server(env, port)
    try:
        assert [post(port, body(n)) for n in range(3)] == [200, 200, 200]  # written normally
        with open(audit.with_name(audit.name + ".lock"), "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # every append now waits, after its commit
            burst = [body(n) for n in range(3, 9)] + [body(3), {"symbol": "BTCUSDT", "side": "sideways"}]
            threads = [threading.Thread(target=post, args=(port, b)) for b in burst]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 30
            while len(signal_ids(database)) < 3 + len(burst) and time.monotonic() < deadline:
                time.sleep(0.1)
            committed = signal_ids(database)
            assert len(committed) == 3 + len(burst), "the burst did not commit in time"
            web = children_of(server.pid)
            for pid in web:  # gunicorn's master leads its own process group, with its workers
                os.killpg(pid, signal.SIGKILL)
            server.kill()
            server.wait(timeout=10)
            fcntl.flock(lock_file, fcntl.LOCK_UN)
        for thread in threads:
            thread.join(timeout=30)
        lines = lines_per_signal(audit)
        missing = [pk for pk in committed if pk not in lines]
        assert len(missing) == len(burst)  # the defect, reproduced: committed, told, and not in the trail

        server = start_server(env, port)  # start-up completes the trail
        assert post(port, body(99)) == 200
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
    committed = signal_ids(database)
    assert lines_per_signal(audit) == {pk: 1 for pk in committed}


def test_workers_sigkilled_mid_burst_owe_no_audit_line_while_the_server_keeps_running(tmp_path):
    """The same, but only the gunicorn workers die (OOM, gunicorn's own timeout): the master
    replaces them and, some seconds later, `audit_recover` writes the lines they owed."""
    env = migrated_sqlite_env(tmp_path, GUNICORN_WORKERS="2", GUNICORN_THREADS="10", LOMS_AUDIT_RECOVER_DELAY_SEC="3")
    database, audit = tmp_path / "loms.sqlite3", Path(env["AUDIT_LOG_PATH"])
    port = free_port()
    server = start_server(env, port)
    try:
        assert post(port, body(0)) == 200
        (master,) = children_of(server.pid)
        with open(audit.with_name(audit.name + ".lock"), "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            burst = [body(n) for n in range(1, 9)]
            threads = [threading.Thread(target=post, args=(port, b)) for b in burst]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 30
            while len(signal_ids(database)) < 1 + len(burst) and time.monotonic() < deadline:
                time.sleep(0.1)
            committed = signal_ids(database)
            assert len(committed) == 1 + len(burst), "the burst did not commit in time"
            for worker in children_of(master):
                os.kill(worker, signal.SIGKILL)
            time.sleep(0.5)
            fcntl.flock(lock_file, fcntl.LOCK_UN)
        for thread in threads:
            thread.join(timeout=30)
        deadline = time.monotonic() + 60
        while set(lines_per_signal(audit)) != set(committed) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert server.poll() is None and post(port, body(99)) == 200  # the server never stopped
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert lines_per_signal(audit) == {pk: 1 for pk in signal_ids(database)}
