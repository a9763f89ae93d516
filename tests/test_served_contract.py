"""The real server (gunicorn + django-q cluster via `manage.py serve`) answers the bot's old scripts.

The bot's helper scripts use plain urllib against 127.0.0.1 with no token (dev profile).
"""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port, migrated_sqlite_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def wait_for(url: str, deadline: float) -> int:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in time")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A fresh SQLite database, migrated, served by `manage.py serve` on a free port."""
    tmp = tmp_path_factory.mktemp("served")
    env = migrated_sqlite_env(tmp, GUNICORN_WORKERS="2")
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/health", started + 60)
        yield base, time.monotonic() - started
    finally:
        process.terminate()
        process.wait(timeout=30)


def call(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_health_and_login_page_answer_within_a_minute(served):
    base, startup_seconds = served
    assert startup_seconds < 60
    status, health = call("GET", f"{base}/health")
    assert status == 200 and health["environment"] == "dev" and health["ok"] is (health["status"] == "ok")
    with urllib.request.urlopen(f"{base}/accounts/login/", timeout=5) as response:
        assert response.status == 200 and b"Log in" in response.read()


def test_the_old_helper_scripts_work_without_a_token(served):
    base, _ = served
    status, opened = call(
        "POST",
        f"{base}/signals/bounce",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "price": 100.0,
            "timestamp": "2025-06-19T10:00:00Z",
            "tp_pct": 4.5,
            "sl_pct": 1.5,
        },
    )
    assert status == 200 and opened["risk_ok"] is True
    assert f"{opened['tp_price']:.4f}" == "104.5000" and f"{opened['sl_price']:.4f}" == "98.5000"
    status, stats = call("GET", f"{base}/stats/")
    assert status == 200 and stats["total_positions"] >= 1
    status, positions = call("GET", f"{base}/positions")
    assert opened["position_id"] in [p["id"] for p in positions["results"]]


VALID_TEXT = '{"symbol": "BTCUSDT", "side": "BUY", "price": 100, "timestamp": "2025-06-19T10:15:00Z"'
BAD_BODIES = {
    "overflow to infinity in an unknown field": VALID_TEXT.encode() + b', "extra": 1e400}',
    "nested 5000 deep": b"[" * 5000 + b"]" * 5000,
    "nested 900 deep in a field": VALID_TEXT.encode() + b', "x": ' + b"[" * 900 + b"]" * 900 + b"}",
    "a lone surrogate": VALID_TEXT.encode() + b', "strategy": "\\ud800"}',
    "a signal_id longer than the column": VALID_TEXT.encode() + b', "signal_id": "' + b"s" * 80 + b'"}',
    "NaN": VALID_TEXT.encode() + b', "qty": NaN}',
    "a tiny qty": VALID_TEXT.encode() + b', "qty": 1e-11}',
    "over the size limit": VALID_TEXT.encode() + b', "strategy": "' + b"x" * 3_000_000 + b'"}',
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_bodies_are_a_json_400_from_the_served_app(served, name):
    """Issue #9: through gunicorn, each of these answered 500 or an HTML page."""
    base, _ = served
    request = urllib.request.Request(
        f"{base}/signals/bounce", data=BAD_BODIES[name], method="POST", headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=30)
    assert answer.value.code == 400 and answer.value.headers["Content-Type"] == "application/json"
    assert json.loads(answer.value.read())["received"] is False


def test_a_killed_serve_takes_its_web_server_down_with_it(tmp_path):
    """Even a SIGKILLed `serve` (no chance to clean up) must not leave a server holding the port."""
    env = migrated_sqlite_env(tmp_path, GUNICORN_WORKERS="1")
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-cluster", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", time.monotonic() + 60)
    finally:
        serve.kill()
        serve.wait(timeout=10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
        except OSError:
            return
        time.sleep(0.3)
    raise AssertionError("the web server outlived its killed `serve`")


def test_serve_refuses_an_unmigrated_database_and_a_busy_address(tmp_path, served):
    """Nothing starts (no cluster, no recovery) on a database that is not migrated or on a port in use."""
    from tests.support import sqlite_process_env

    unmigrated = subprocess.run(
        [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{free_port()}"],
        cwd=ROOT,
        env=sqlite_process_env(tmp_path / "new.sqlite3"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unmigrated.returncode == 1 and "manage.py migrate" in unmigrated.stderr
    base, _ = served  # its port is taken
    busy = subprocess.run(
        [sys.executable, "manage.py", "serve", "--bind", base.removeprefix("http://")],
        cwd=ROOT,
        env=migrated_sqlite_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert busy.returncode == 1 and "cannot listen on" in busy.stderr
