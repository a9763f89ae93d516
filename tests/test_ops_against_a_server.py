"""check_health and send_test_signal against a real server (`manage.py serve --no-cluster`).

The server runs on a fresh SQLite file; the test writes the auto-close monitor row itself to
make the service look healthy or degraded (no cluster runs here).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support import free_port, sqlite_process_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ops-served")
    env = sqlite_process_env(tmp / "loms.sqlite3", GUNICORN_WORKERS="1", API_ALLOW_ANONYMOUS="false")

    def manage(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    assert manage("migrate", "--noinput").returncode == 0
    token = manage("create_api_token", "ops-test", "--role", "bot").stdout.strip()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-cluster", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2)
            break
        except urllib.error.HTTPError:
            break  # 503 (degraded/error) still means it answers
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.terminate()
                raise AssertionError("the server did not start") from None
            time.sleep(0.3)
    try:
        yield {"base": base, "db": tmp / "loms.sqlite3", "env": env, "token": token, "manage": manage}
    finally:
        process.terminate()
        process.wait(timeout=30)


def set_last_sweep(db: Path, when: datetime) -> None:
    with sqlite3.connect(db, timeout=30) as conn:
        stamp = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        updated = conn.execute("UPDATE oms_autoclosemonitor SET last_sweep_at = ? WHERE id = 1", (stamp,)).rowcount
        assert updated == 1


def check_health(server, url: str) -> subprocess.CompletedProcess:
    return server["manage"]("check_health", "--url", url, "--timeout", "3")


def test_check_health_exits_0_against_a_healthy_server(server):
    set_last_sweep(server["db"], datetime.now(UTC))
    done = check_health(server, server["base"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LOMS health: OK" in done.stdout and "environment   dev" in done.stdout


def test_check_health_exits_1_against_a_degraded_server(server):
    set_last_sweep(server["db"], datetime.now(UTC) - timedelta(minutes=10))
    done = check_health(server, server["base"])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DEGRADED" in done.stdout and "loop_stale" in done.stdout


def test_check_health_exits_2_when_no_server_listens(server):
    done = check_health(server, f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 2
    assert "UNREACHABLE" in done.stdout


def test_send_test_signal_opens_a_position_through_the_api_with_a_token(server):
    done = server["manage"](
        "send_test_signal",
        "--url",
        server["base"],
        "--token",
        server["token"],
        "--symbol",
        "BTCUSDT",
        "--side",
        "BUY",
        "--price",
        "100",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Opened position #" in done.stdout
    with sqlite3.connect(server["db"]) as conn:
        strategy, account = conn.execute("SELECT strategy, account_label FROM oms_position").fetchone()
    assert (strategy, account) == ("loms_test_signal", "default")


def test_send_test_signal_without_a_token_is_refused(server):
    env_token = {k: v for k, v in server["env"].items() if k != "LOMS_API_TOKEN"}
    done = subprocess.run(
        [sys.executable, "manage.py", "send_test_signal", "--url", server["base"], "--price", "100"],
        cwd=ROOT,
        env=env_token,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "HTTP 401" in done.stdout
