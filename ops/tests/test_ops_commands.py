"""The operator's terminal commands: health, stats, test signal, export, close-all, and their --help."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from io import StringIO

import pytest
import responses
from django.core.management import CommandError, call_command, get_commands, load_command_class
from django.utils import timezone

from oms.models import AutoCloseMonitor, Position, PositionStatus
from oms.tests.factories import closed_position, open_position

OPS_COMMANDS = [
    "backup",
    "verify_backup",
    "restore",
    "prune_backups",
    "check_health",
    "print_stats",
    "send_test_signal",
    "shadow_report",
    "export_positions",
    "new_epoch",
    "close_all",
    "serve",
    "ensure_admin",
    "show_config",
    "create_api_token",
    "set_role",
    "notify_test",
]


def exit_code(*argv: str, stdout: StringIO | None = None) -> int:
    try:
        call_command(*argv, stdout=stdout or StringIO())
    except SystemExit as exc:
        return int(exc.code)
    except CommandError:
        return 1
    return 0


@pytest.mark.parametrize("name", OPS_COMMANDS)
def test_every_operations_command_explains_itself_and_each_option(name):
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    assert len(command.help) > 80, "the help says what the command does and what it returns"
    for action in parser._actions:
        if action.dest in {
            "help",
            "version",
            "verbosity",
            "settings",
            "pythonpath",
            "traceback",
            "no_color",
            "force_color",
            "skip_checks",
        }:
            continue
        assert action.help and len(action.help) > 5, f"{name} {action.option_strings or action.dest} lacks help"
    assert "usage: manage.py " + name in parser.format_help()


@pytest.mark.django_db
def test_check_health_exits_0_when_the_sweep_is_fresh_and_1_when_it_is_stale():
    AutoCloseMonitor.objects.update_or_create(pk=1, defaults={"last_sweep_at": timezone.now()})
    out = StringIO()
    assert exit_code("check_health", stdout=out) == 0
    text = out.getvalue()
    for word in (
        "LOMS health: OK",
        "environment",
        "broker mode",
        "OMS switch",
        "database",
        "audit log",
        "prices",
        "auto-close",
    ):
        assert word in text
    AutoCloseMonitor.objects.filter(pk=1).update(last_sweep_at=timezone.now() - timedelta(minutes=5))
    assert exit_code("check_health") == 1


@pytest.mark.django_db
def test_check_health_exits_2_when_the_database_is_unavailable(monkeypatch):
    from ops.management.commands import check_health

    monkeypatch.setattr(
        check_health,
        "health_report",
        lambda: {"ok": False, "status": "error", "database": "unavailable (OperationalError)"},
    )
    assert exit_code("check_health") == 2


@responses.activate
def test_check_health_reads_a_remote_report_and_its_status():
    responses.get("http://loms.test/health", json={"status": "degraded", "ok": True, "environment": "paper"})
    out = StringIO()
    assert exit_code("check_health", "--url", "http://loms.test", stdout=out) == 1
    assert "DEGRADED" in out.getvalue() and "paper" in out.getvalue()
    responses.replace(responses.GET, "http://loms.test/health", body="<html>bad gateway</html>", status=502)
    assert exit_code("check_health", "--url", "http://loms.test") == 2


@responses.activate
def test_send_test_signal_posts_like_the_bot_with_the_token_and_reports_the_outcome(monkeypatch):
    monkeypatch.setenv("LOMS_API_TOKEN", "tok-123")
    responses.get("http://loms.test/market", json={"symbol": "ETHUSDT", "last": 2500.5, "mode": "last"})
    responses.post(
        "http://loms.test/signals/bounce",
        json={"received": True, "risk_ok": True, "position_id": 7, "order_id": 9, "oms_enabled": True},
    )
    out = StringIO()
    assert (
        exit_code("send_test_signal", "--url", "http://loms.test", "--symbol", "ethusdt", "--side", "sell", stdout=out)
        == 0
    )
    sent = json.loads(responses.calls[1].request.body)
    assert responses.calls[1].request.headers["Authorization"] == "Token tok-123"
    assert (sent["symbol"], sent["side"], sent["price"], sent["strategy"]) == (
        "ETHUSDT",
        "SELL",
        2500.5,
        "loms_test_signal",
    )
    assert sent["signal_id"].startswith("test-") and "Opened position #7" in out.getvalue()


@responses.activate
def test_send_test_signal_exits_1_when_blocked_and_2_when_refused():
    responses.post(
        "http://loms.test/signals/bounce",
        json={"received": True, "risk_ok": False, "risk_reason": "max_open_positions_exceeded"},
    )
    out = StringIO()
    assert exit_code("send_test_signal", "--url", "http://loms.test", "--price", "100", "--token", "t", stdout=out) == 1
    assert "max_open_positions_exceeded" in out.getvalue()
    responses.replace(responses.POST, "http://loms.test/signals/bounce", json={"detail": "no"}, status=401)
    assert exit_code("send_test_signal", "--url", "http://loms.test", "--price", "100", "--token", "t") == 2
    assert exit_code("send_test_signal", "--url", "http://127.0.0.1:9", "--price", "100", "--token", "t") == 2


@pytest.mark.django_db
def test_export_positions_writes_a_csv_a_spreadsheet_can_read(tmp_path):
    closed_position(pnl="2.5", account_label="e1", symbol="ETHUSDT")
    open_position(account_label="e2")
    target = tmp_path / "out" / "positions.csv"
    call_command("export_positions", "--format", "csv", "--out", str(target), "--epoch", "e1")
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 1
    assert (rows[0]["symbol"], rows[0]["pnl"], rows[0]["status"], rows[0]["account_label"]) == (
        "ETHUSDT",
        "2.5",
        "closed",
        "e1",
    )
    assert rows[0]["closed_at"].endswith("+00:00")


@pytest.mark.django_db
def test_close_all_refuses_without_yes_and_closes_everything_with_it():
    open_position(symbol="BTCUSDT")
    open_position(symbol="ETHUSDT")
    with pytest.raises(CommandError, match="2 open position"):
        call_command("close_all", stdout=StringIO())
    assert Position.objects.filter(status=PositionStatus.OPEN).count() == 2
    out = StringIO()
    call_command("close_all", "--yes", stdout=out)
    assert not Position.objects.filter(status=PositionStatus.OPEN).exists()
    assert set(Position.objects.values_list("auto_close_reason", flat=True)) == {"panic"}
    assert "Closed 2; 0 still open." in out.getvalue()


@pytest.mark.parametrize(
    "argv",
    [
        ("print_stats", "--since", "9999-12-31T23:59:59-23:59"),
        ("shadow_report", "--days", "99999999999"),
        ("audit_recover", "--hours", "1e9"),
    ],
)
@pytest.mark.django_db
def test_an_out_of_range_option_is_a_clear_error_never_a_traceback(argv):
    with pytest.raises(CommandError):
        call_command(*argv, stdout=StringIO())
