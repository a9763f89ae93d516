"""Health that never says ok when it is not: every rule, anonymous vs authenticated /health, exit codes."""

from __future__ import annotations

import os
from datetime import timedelta
from io import StringIO

import pytest
import responses as responses_lib
from django.core.management import call_command
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from oms.models import AutoCloseMonitor, SweepRun
from oms.services import health
from oms.services.health import HealthContext, Reason, health_report
from oms.services.switch import oms_switch_set
from oms.services.trips import TRIP_ACTOR
from oms.tests.factories import open_position
from oms.tests.test_sweep import aged, sweep
from pricing.quotes import QuoteError

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_sweep(settings, tmp_path):
    """A healthy baseline: a sweep just ran, no backup is due yet (backups in an empty directory)."""
    settings.BACKUP_DIR = tmp_path / "backups"
    AutoCloseMonitor.objects.update_or_create(pk=1, defaults={"last_sweep_at": timezone.now()})


def codes(report: dict | None = None) -> list[str]:
    return [reason["code"] for reason in (report or health_report())["reasons"]]


def exit_code(*argv: str, stdout: StringIO | None = None) -> int:
    try:
        call_command("check_health", *argv, stdout=stdout or StringIO())
    except SystemExit as exc:
        return int(exc.code)
    return 0


def test_a_fresh_sweep_with_nothing_wrong_is_ok():
    report = health_report()
    assert (report["status"], report["reasons"]) == ("ok", [])
    assert exit_code() == 0


def test_the_switch_off_by_hand_is_degraded_and_names_who_and_why_only_in_the_detail():
    oms_switch_set(enabled=False, actor="alice", reason="CPI release at 14:30")
    [reason] = health_report()["reasons"]
    assert reason["code"] == "switch_off" and "by hand" in reason["message"]
    assert "alice" not in reason["message"] and "CPI" not in reason["message"]
    assert "alice" in reason["detail"] and "CPI release at 14:30" in reason["detail"]
    out = StringIO()
    assert exit_code(stdout=out) == 1
    assert "switch_off" in out.getvalue()


def test_the_switch_off_by_a_trip_says_so(settings):
    oms_switch_set(enabled=False, actor=TRIP_ACTOR, reason="automatic trip: daily loss 120 >= 100")
    [reason] = health_report()["reasons"]
    assert reason["message"] == "the OMS switch is off (by an automatic trip)"


def test_the_switch_forced_off_by_the_environment_is_degraded(settings):
    settings.OMS_ENABLED = False
    assert codes() == ["switch_off"]


def test_a_stale_loop_is_degraded(settings):
    AutoCloseMonitor.objects.filter(pk=1).update(last_sweep_at=timezone.now() - timedelta(minutes=5))
    assert codes() == ["loop_stale"]
    AutoCloseMonitor.objects.filter(pk=1).update(last_sweep_at=None)
    assert "no sweep has run yet" in health_report()["reasons"][0]["message"]


def add_sweeps(*errors: str) -> None:
    now = timezone.now()
    for i, error in enumerate(errors):
        at = now - timedelta(seconds=len(errors) - i)
        SweepRun.objects.create(started_at=at, finished_at=at, duration_ms=1, error=error)


def test_sweeps_that_keep_failing_are_degraded_but_one_failure_between_good_sweeps_is_not(settings):
    settings.HEALTH_FAILED_SWEEPS = 3
    add_sweeps("", "boom", "", "boom", "boom")
    assert codes() == []
    add_sweeps("boom")
    AutoCloseMonitor.objects.filter(pk=1).update(last_error="RuntimeError: boom")
    [reason] = health_report()["reasons"]
    assert reason["code"] == "sweeps_failing" and "RuntimeError: boom" in reason["detail"]


def test_an_open_symbol_without_a_quote_for_price_alert_after_sec_is_degraded(settings):
    settings.PRICE_ALERT_AFTER_SEC = 60
    aged(symbol="ETHUSDT", age_sec=3600)
    aged(symbol="BTCUSDT", age_sec=3600, tp="1000")
    failing = {"BTCUSDT": "101", "ETHUSDT": QuoteError("ETHUSDT", "HTTP 502")}
    sweep(failing)
    sweep(failing)
    monitor = AutoCloseMonitor.load()
    assert monitor.quote_failures["ETHUSDT"]["count"] == 2
    assert codes() == []  # failing for well under 60 s
    # The streak started 61 s ago (the sweeps stamp it with the wall clock: move it back).
    monitor.quote_failures["ETHUSDT"]["failing_since"] = (timezone.now() - timedelta(seconds=61)).isoformat()
    monitor.save(update_fields=["quote_failures"])
    [reason] = health_report()["reasons"]
    assert reason["code"] == "no_quote" and "ETHUSDT" in reason["message"] and "BTCUSDT" not in reason["message"]
    assert "HTTP 502" in reason["detail"]


def test_a_good_quote_restarts_the_failing_streak():
    aged(symbol="ETHUSDT", age_sec=3600)
    sweep({"ETHUSDT": QuoteError("ETHUSDT", "HTTP 502")})
    first = AutoCloseMonitor.load().quote_failures["ETHUSDT"]["failing_since"]
    sweep({"ETHUSDT": QuoteError("ETHUSDT", "HTTP 502")})
    assert AutoCloseMonitor.load().quote_failures["ETHUSDT"]["failing_since"] == first
    sweep({"ETHUSDT": "100"})
    assert AutoCloseMonitor.load().last_sweep_failed_symbols == []
    sweep({"ETHUSDT": QuoteError("ETHUSDT", "timeout")})
    assert AutoCloseMonitor.load().quote_failures["ETHUSDT"]["failing_since"] > first


def test_a_failing_symbol_without_an_open_position_is_not_a_reason(settings):
    settings.PRICE_ALERT_AFTER_SEC = 1
    AutoCloseMonitor.objects.filter(pk=1).update(
        last_sweep_failed_symbols=["XRPUSDT"],
        quote_failures={"XRPUSDT": {"count": 9, "last_error": "x", "failing_since": "2020-01-01T00:00:00+00:00"}},
    )
    assert codes() == []
    open_position(symbol="XRPUSDT")
    assert codes() == ["no_quote"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_audit_path_that_cannot_be_written_is_degraded(settings, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    settings.AUDIT_LOG_PATH = locked / "audit" / "signals.jsonl"
    assert codes() == []
    locked.chmod(0o500)
    try:
        [reason] = health_report()["reasons"]
        assert reason["code"] == "audit_not_writable" and str(locked) in reason["detail"]
        assert str(locked) not in reason["message"]
    finally:
        locked.chmod(0o700)


def test_an_audit_path_that_is_a_directory_is_degraded(settings, tmp_path):
    settings.AUDIT_LOG_PATH = tmp_path
    assert codes() == ["audit_not_writable"]


def test_an_audit_path_under_a_file_is_degraded(settings, tmp_path):
    (tmp_path / "plain-file").write_text("x")
    settings.AUDIT_LOG_PATH = tmp_path / "plain-file" / "audit" / "signals.jsonl"
    assert codes() == ["audit_not_writable"]


def make_backup(directory, hours_ago: float, *, damaged: bool = False) -> None:
    """A backup file as `backup_create` names it: its manifest first (or, damaged, a few bytes)."""
    import io
    import json
    import tarfile

    from ops.backups import FORMAT_VERSION, backup_name

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / backup_name(now=timezone.now() - timedelta(hours=hours_ago), environment="dev", vendor="sqlite")
    if damaged:
        path.write_bytes(b"x")
        return
    with tarfile.open(path, "w:gz") as archive:
        body = json.dumps({"format": FORMAT_VERSION}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))


def test_the_last_backup_older_than_backup_max_age_hours_is_degraded(settings):
    settings.BACKUP_MAX_AGE_HOURS = 26
    make_backup(settings.BACKUP_DIR, hours_ago=27)
    [reason] = health_report()["reasons"]
    assert reason["code"] == "backup_old" and "27 h" in reason["message"]
    make_backup(settings.BACKUP_DIR, hours_ago=1)
    assert codes() == []
    settings.BACKUP_MAX_AGE_HOURS = 0.5
    assert codes() == ["backup_old"]
    settings.BACKUP_MAX_AGE_HOURS = 0  # not checked
    assert codes() == []


def test_a_damaged_or_empty_newer_file_does_not_count_as_a_good_backup(settings):
    settings.BACKUP_MAX_AGE_HOURS = 26
    make_backup(settings.BACKUP_DIR, hours_ago=30)
    make_backup(settings.BACKUP_DIR, hours_ago=0.1, damaged=True)
    assert codes() == ["backup_old"]


def test_no_backup_at_all_is_degraded_only_once_the_installation_is_older_than_the_limit(settings):
    from ops.health import _installed_at

    _installed_at.cache_clear()
    assert codes() == []  # a fresh install has a day to make its first backup
    MigrationRecorder.Migration.objects.filter(app="oms", name="0001_initial").update(
        applied=timezone.now() - timedelta(hours=30)
    )
    _installed_at.cache_clear()  # read once per process: as if installed 30 h before this process started
    try:
        assert codes() == ["backup_missing"]
    finally:
        _installed_at.cache_clear()


def test_every_reason_is_listed_at_once(settings):
    settings.AUDIT_LOG_PATH = settings.BACKUP_DIR.parent  # a directory
    oms_switch_set(enabled=False, actor="alice", reason="x")
    AutoCloseMonitor.objects.filter(pk=1).update(last_sweep_at=None)
    assert codes() == ["switch_off", "loop_stale", "audit_not_writable"]
    assert exit_code() == 1


def test_a_check_that_raises_becomes_a_reason_and_another_check_is_easy_to_add(monkeypatch):
    def broken(ctx: HealthContext):
        raise RuntimeError("oops")

    def unclosable(ctx: HealthContext):
        yield Reason("close_failing", "a position could not be closed", "position #7")

    monkeypatch.setattr(health, "HEALTH_CHECKS", [*health.HEALTH_CHECKS, broken, unclosable])
    report = health_report()
    assert codes(report) == ["check_failed", "close_failing"]
    assert "RuntimeError: oops" in report["reasons"][0]["detail"]


# --- GET /health: anonymous vs authenticated --------------------------------------------------

SECRET_BITS = ("alice", "CPI release", "db.example", "signals.jsonl", "worker-host-7", "4242")


def _details_everywhere(settings):
    settings.DATABASE_URL = "postgres://loms:pw@db.example:5432/loms"
    oms_switch_set(enabled=False, actor="alice", reason="CPI release")
    AutoCloseMonitor.objects.filter(pk=1).update(
        lease_owner="loop-1",
        lease_host="worker-host-7",
        lease_pid=4242,
        lease_expires_at=timezone.now() + timedelta(seconds=10),
    )


def test_anonymous_health_shows_the_state_and_reasons_only(strict_api, anon_client, settings):
    _details_everywhere(settings)
    response = anon_client.get("/health")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded" and body["ok"] is False  # `ok` never says healthy when it is not
    assert body["reasons"] == [{"code": "switch_off", "message": "the OMS switch is off (by hand)"}]
    assert set(body) <= set(health.PUBLIC_KEYS)
    for bit in SECRET_BITS:
        assert bit not in response.content.decode(), bit


def test_an_authenticated_caller_gets_the_details(strict_api, viewer_client, settings):
    _details_everywhere(settings)
    body = viewer_client.get("/health").json()
    assert body["status"] == "degraded"
    assert body["database_url"] == "postgres://loms:***@db.example:5432/loms"
    assert body["oms_switch"]["changed_by"] == "alice" and body["oms_switch"]["reason"] == "CPI release"
    assert body["auto_close"]["loop"]["host"] == "worker-host-7" and body["auto_close"]["loop"]["pid"] == 4242
    assert "alice" in body["reasons"][0]["detail"]
    assert body["audit_log_path"].endswith("signals.jsonl")


def test_a_token_caller_gets_the_details_too(strict_api, bot_client):
    body = bot_client.get("/health").json()
    assert "database_url" in body and "auto_close" in body


def test_a_database_error_is_status_error_and_http_503(anon_client, monkeypatch):
    from django.db import OperationalError

    def down():
        raise OperationalError("no such table")

    monkeypatch.setattr(health, "switch_state", down)
    response = anon_client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error" and body["reasons"][0]["code"] == "database"
    assert exit_code() == 2


@responses_lib.activate
def test_check_health_url_prints_the_reasons_and_sends_the_token_for_the_details(monkeypatch):
    anonymous = {
        "ok": True,
        "status": "degraded",
        "environment": "paper",
        "oms_enabled": False,
        "reasons": [{"code": "switch_off", "message": "the OMS switch is off (by hand)"}],
    }
    responses_lib.get("http://loms.test/health", json=anonymous)
    out = StringIO()
    assert exit_code("--url", "http://loms.test", stdout=out) == 1
    assert "switch_off: the OMS switch is off (by hand)" in out.getvalue()
    assert "Authorization" not in responses_lib.calls[0].request.headers
    monkeypatch.setenv("LOMS_API_TOKEN", "tok-123")
    detailed = {**anonymous, "reasons": [{**anonymous["reasons"][0], "detail": "switched off by alice: CPI"}]}
    responses_lib.replace(responses_lib.GET, "http://loms.test/health", json=detailed)
    out = StringIO()
    assert exit_code("--url", "http://loms.test", stdout=out) == 1
    assert responses_lib.calls[1].request.headers["Authorization"] == "Token tok-123"
    assert "switched off by alice: CPI" in out.getvalue()
