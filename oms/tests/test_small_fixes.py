"""Issue #9 §7, the smaller things: each test reproduced the defect before its fix.

- `set_role --create` without a terminal: a clear error suggesting `--random-password`, no traceback;
- the overview's "Last changed by" does not say "root (command) (command)";
- `print_stats --json` / `shadow_report --json` give money as JSON numbers, like the API;
- `export_positions | head` ends quietly (no BrokenPipeError).

The replay clock and the simulator: `pricing/tests/test_shared_clock_and_simulator.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal, InvalidOperation
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from oms.models import OmsSwitchChange, SwitchSource
from oms.services.switch import oms_switch_set
from oms.tests.factories import closed_position
from tests.support import ROOT, migrated_sqlite_env


@pytest.fixture(scope="module")
def process_env(tmp_path_factory):
    """A migrated SQLite database of its own for commands run as real processes, with 3 000 positions."""
    env = migrated_sqlite_env(tmp_path_factory.mktemp("commands"))
    code = (
        "import django; django.setup(); from oms.models import Position; "
        "Position.objects.bulk_create([Position(exchange='bitget', symbol=f'S{n % 50}USDT', side='long', qty=1, "
        "entry_price=100 + n, strategy='bulk') for n in range(3000)])"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "lomsite.settings"},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return env


def manage(env: dict, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, **kwargs
    )


# --- set_role --create without a terminal ----------------------------------------------------------------


def test_set_role_create_without_a_terminal_suggests_random_password_instead_of_a_traceback(process_env):
    # No controlling terminal (new session) and nothing on stdin: as from cron, a script or `ssh host cmd`.
    result = manage(
        process_env, "set_role", "bob", "viewer", "--create", stdin=subprocess.DEVNULL, start_new_session=True
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "--random-password" in result.stderr
    created = manage(
        process_env,
        "set_role",
        "bob",
        "viewer",
        "--create",
        "--random-password",
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert created.returncode == 0 and "password: " in created.stdout


# --- export_positions | head ----------------------------------------------------------------------------


def test_export_positions_into_a_pipe_closed_early_ends_quietly(process_env):
    process = subprocess.Popen(
        [sys.executable, "manage.py", "export_positions"],
        cwd=ROOT,
        env=process_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    header = process.stdout.readline()  # what `| head -1` reads
    process.stdout.close()  # ...before it exits
    _, stderr = process.communicate(timeout=120)
    assert header.startswith(b"id,account_label,")
    assert b"BrokenPipeError" not in stderr and b"Traceback" not in stderr, stderr.decode()[-500:]
    assert process.returncode == 0


# --- money in --json output ---------------------------------------------------------------------------------


def decimal_strings(value, path="") -> list[str]:
    """Paths of the strings in a JSON document that are numbers in disguise ("5.00000")."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in decimal_strings(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in decimal_strings(item, f"{path}[{i}]")]
    if isinstance(value, str):
        try:
            Decimal(value)
        except InvalidOperation:
            return []
        return [f"{path}={value!r}"]
    return []


@pytest.mark.django_db
def test_print_stats_json_gives_money_as_numbers():
    closed_position(pnl="5", reason="tp")
    closed_position(pnl="-2", reason="sl", fee="0.1")
    out = StringIO()
    call_command("print_stats", "--json", stdout=out)
    stats = json.loads(out.getvalue())
    assert stats["total_pnl"] == 3 and isinstance(stats["total_pnl"], float)
    assert decimal_strings(stats) == []
    out = StringIO()
    call_command("print_stats", "--json", "--by", "symbol", stdout=out)
    assert decimal_strings(json.loads(out.getvalue())) == []


@pytest.mark.django_db
def test_shadow_report_json_gives_money_as_numbers():
    closed_position(pnl="5", reason="tp")
    closed_position(pnl="-2", reason="sl")
    out = StringIO()
    with pytest.raises(SystemExit):  # NO-GO: too few trades
        call_command("shadow_report", "--days", "5", "--epoch", "all", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert decimal_strings(report) == []


# --- "root (command) (command)" -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_overview_names_who_changed_the_switch_and_from_where_once(operator, monkeypatch):
    web = Client()
    web.force_login(operator)
    monkeypatch.setattr("getpass.getuser", lambda: "root")
    call_command("oms_switch", "off", "--reason", "maintenance", stdout=StringIO())
    page = web.get("/").content.decode()
    assert "root (command)" in page
    assert "(command) (command)" not in page
    oms_switch_set(enabled=True, actor="alice", reason="back", source=SwitchSource.API)
    assert "alice (api)" in web.get("/").content.decode()
    assert OmsSwitchChange.objects.first().changed_by_names_source is False
