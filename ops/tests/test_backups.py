"""Backups: taken under load they verify and restore to exactly their manifest; restore and prune are safe.

Runs on whichever database DATABASE_URL selects (SQLite by default, PostgreSQL with
`make test-postgres`); restores go into a separate, empty throw-away database.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
import tarfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from oms.models import AutoCloseMonitor, Position, Signal
from oms.services.signals import signal_ingest
from oms.tests.factories import open_position
from ops.backups import (
    SCHEDULE_NAME,
    BackupError,
    DatabaseTarget,
    backup_create,
    backup_restore,
    backup_schedule_ensure,
    backup_scheduled,
    backup_verify,
    backups_list,
    backups_prune,
    database_counts,
    next_daily_run,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _backup_dir(settings, tmp_path):
    settings.BACKUP_DIR = tmp_path / "backups"


@pytest.fixture
def empty_target(tmp_path):
    """A fresh, empty database of the same engine as the test database."""
    live = DatabaseTarget.from_alias()
    if live.vendor == "sqlite":
        yield DatabaseTarget("sqlite", str(tmp_path / "restored.sqlite3"))
        return
    scratch = live.with_name(f"loms_ops_restore_{int(time.time() * 1000) % 10**9}")
    subprocess.run(["createdb", *scratch.pg_args(), scratch.name], env=scratch.pg_env(), check=True)
    try:
        yield scratch
    finally:
        subprocess.run(["dropdb", "--if-exists", *scratch.pg_args(), scratch.name], env=scratch.pg_env(), check=True)


class SignalStream:
    """Posts about `rate` signals per second from two threads (each with its own connection)."""

    def __init__(self, rate: float = 20.0) -> None:
        self.interval = 2 / rate
        self.stop = threading.Event()
        self.sent_at: list[float] = []
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(2)]

    def _run(self, worker: int) -> None:
        counter = 0
        try:
            while not self.stop.is_set():
                counter += 1
                signal_ingest(
                    payload={
                        "symbol": f"S{worker}X{counter % 40}USDT",
                        "side": "BUY",
                        "price": 100.0,
                        "timestamp": "2025-06-19T10:00:00Z",
                        "signal_id": f"load-{worker}-{counter}",
                    }
                )
                self.sent_at.append(time.monotonic())
                time.sleep(self.interval)
        except BaseException as exc:  # asserted by the test
            self.errors.append(exc)
        finally:
            connection.close()

    def __enter__(self) -> SignalStream:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_a_backup_taken_while_twenty_signals_per_second_arrive_verifies_and_restores_to_its_manifest(
    settings, empty_target
):
    with SignalStream(rate=20) as stream:
        time.sleep(1.5)
        started = time.monotonic()
        result = backup_create()
        finished = time.monotonic()
        time.sleep(1.0)
    assert stream.errors == []
    assert any(t < started for t in stream.sent_at) and any(t > finished for t in stream.sent_at)
    signals_in_backup = result.manifest["tables"]["oms_signal"]
    assert 0 < signals_in_backup < Signal.objects.count()  # writes went on before and after the copy
    assert result.manifest["tables"]["oms_position"] == signals_in_backup  # every signal opened one

    verified = backup_verify(result.path)
    assert verified.ok, verified.problems

    restored = backup_restore(path=result.path, target=empty_target, safety_backup=False, restore_audit=False)
    assert restored.tables == result.manifest["tables"]
    assert database_counts(empty_target) == result.manifest["tables"]


def test_the_manifest_names_the_copy_and_its_audit_lines(settings, signal_body):
    for n in range(3):
        signal_ingest(payload=signal_body(signal_id=f"m-{n}"))
    result = backup_create(label="before-upgrade")
    name = result.path.name
    assert name.endswith(f"_loms_dev_{connection.vendor}_before-upgrade.tar.gz")
    assert datetime.strptime(name[:17], "%Y-%m-%d_%H%M%S")
    manifest = result.manifest
    assert manifest["audit"]["live_lines"] == 3
    assert manifest["tables"]["oms_signal"] == 3
    assert manifest["migrations"]["latest"]["oms"] and manifest["migrations"]["count"] > 10
    assert set(manifest["files"]) == {manifest["database"]["member"], "audit/signals.jsonl"}
    with tarfile.open(result.path) as archive:
        assert archive.getnames()[0] == "manifest.json"


def test_a_backup_is_readable_by_its_owner_only(settings, tmp_path):
    """A backup holds the whole database (users' password hashes, the audit trail): 0600 in 0700."""
    settings.BACKUP_DIR = tmp_path / "shared" / "backups"
    settings.BACKUP_DIR.parent.mkdir()
    settings.BACKUP_DIR.mkdir(mode=0o755)  # an existing directory others can read is tightened too
    old_umask = os.umask(0o022)
    try:
        first = backup_create(now=timezone.now() - timedelta(seconds=5)).path
        second = backup_create().path
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(settings.BACKUP_DIR.stat().st_mode) == 0o700
    assert [stat.S_IMODE(path.stat().st_mode) for path in (first, second)] == [0o600, 0o600]
    settings.BACKUP_DIR = tmp_path / "fresh" / "nested"
    assert stat.S_IMODE(backup_create().path.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.BACKUP_DIR.stat().st_mode) == 0o700


def test_verify_reports_a_damaged_member_and_a_truncated_archive(settings, tmp_path, signal_body):
    signal_ingest(payload=signal_body())
    good = backup_create().path
    with tarfile.open(good) as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}
    members["audit/signals.jsonl"] = b'{"forged": true}\n'
    forged = tmp_path / good.name
    write_tar(forged, members)
    assert backup_verify(forged).problems == ["audit/signals.jsonl: checksum mismatch"]
    members["audit/extra.jsonl"] = b"{}\n"
    del members["audit/signals.jsonl"]
    write_tar(forged, members)
    assert backup_verify(forged).problems == [
        "audit/signals.jsonl: missing from the archive",
        "audit/extra.jsonl: in the archive but not in the manifest",
    ]

    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert not backup_verify(truncated).ok
    assert call_command_exit(["verify_backup", str(good)]) == 0
    assert call_command_exit(["verify_backup", str(truncated)]) == 1


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def call_command_exit(argv: list[str]) -> int:
    try:
        call_command(*argv)
    except CommandError:
        return 1
    return 0


def test_restore_without_yes_changes_nothing(settings):
    open_position(symbol="KEPTUSDT")
    backup = backup_create().path
    open_position(symbol="NEWUSDT")
    with pytest.raises(CommandError, match="Nothing was changed"):
        call_command("restore", str(backup))
    assert sorted(Position.objects.values_list("symbol", flat=True)) == ["KEPTUSDT", "NEWUSDT"]
    assert [path for _, path in backups_list()] == [backup]  # not even a safety backup


def test_restore_refuses_while_the_cluster_sweeps(settings):
    backup = backup_create().path
    AutoCloseMonitor.objects.update_or_create(pk=1, defaults={"last_sweep_at": timezone.now()})
    open_position(symbol="NEWUSDT")
    with pytest.raises(CommandError, match="cluster seems to be running"):
        call_command("restore", str(backup), "--yes")
    assert Position.objects.filter(symbol="NEWUSDT").exists()


def test_restore_with_yes_brings_back_the_backup_and_keeps_a_safety_copy(settings):
    open_position(symbol="KEPTUSDT")
    backup = backup_create(now=timezone.now() - timedelta(seconds=5)).path
    open_position(symbol="NEWUSDT")
    open_position(symbol="NEWERUSDT")
    call_command("restore", str(backup), "--yes")
    assert list(Position.objects.values_list("symbol", flat=True)) == ["KEPTUSDT"]
    safety = [path for _, path in backups_list() if "pre-restore" in path.name]
    assert len(safety) == 1
    assert backup_verify(safety[0]).manifest["tables"]["oms_position"] == 3


def test_a_restore_is_recorded_in_the_restored_database(settings):
    from oms.models import OperatorAction

    backup = backup_create(now=timezone.now() - timedelta(seconds=5)).path
    call_command("restore", str(backup), "--yes", "--actor", "olga", "--reason", "bad migration", stdout=io.StringIO())
    [row] = OperatorAction.objects.all()
    assert (row.action, row.actor, row.source, row.reason) == ("restore", "olga", "command", "bad migration")
    assert row.details["file"] == backup.name and row.details["safety_backup"].endswith(".tar.gz")


def touch_backup(directory: Path, taken: datetime, label: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{taken:%Y-%m-%d_%H%M%S}_loms_paper_sqlite{'_' + label if label else ''}.tar.gz"
    path.write_bytes(b"x")
    return path


def test_prune_keeps_every_backup_younger_than_the_retention(settings):
    now = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
    directory = settings.BACKUP_DIR
    ages = {1: None, 10: None, 29: None, 31: None, 90: None}
    for days in ages:
        ages[days] = touch_backup(directory, now - timedelta(days=days, minutes=1))
    stranger = directory / "notes.txt"
    stranger.write_text("not a backup")
    result = backups_prune(retention_days=30, now=now)
    assert sorted(result.deleted) == sorted([ages[31], ages[90]])
    assert {p for p in directory.iterdir()} == {ages[1], ages[10], ages[29], stranger}


def test_prune_never_deletes_the_newest_backup(settings):
    now = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
    old = [touch_backup(settings.BACKUP_DIR, now - timedelta(days=d)) for d in (100, 60, 45)]
    result = backups_prune(retention_days=30, now=now)
    assert result.kept == [old[2]] and old[2].exists()
    assert not old[0].exists() and not old[1].exists()


def test_prune_refuses_a_retention_below_seven_days_unless_forced(settings):
    now = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
    old = touch_backup(settings.BACKUP_DIR, now - timedelta(days=5))
    touch_backup(settings.BACKUP_DIR, now)
    with pytest.raises(BackupError, match="below the minimum of 7"):
        backups_prune(retention_days=3, now=now)
    assert old.exists()
    assert backups_prune(retention_days=3, now=now, force=True).deleted == [old]


def test_prune_also_removes_old_rotated_audit_files(settings):
    audit_dir = Path(settings.AUDIT_LOG_PATH).parent
    audit_dir.mkdir(parents=True, exist_ok=True)
    old = audit_dir / "signals.jsonl.2025-05-01_000000.gz"
    recent = audit_dir / "signals.jsonl.2025-06-29_000000.gz"
    for path in (old, recent):
        path.write_bytes(gzip.compress(b"{}\n"))
    Path(settings.AUDIT_LOG_PATH).write_text("{}\n")
    result = backups_prune(retention_days=30, now=datetime(2025, 6, 30, tzinfo=UTC))
    assert result.audit_deleted == [old]
    assert recent.exists() and Path(settings.AUDIT_LOG_PATH).exists()


def test_the_daily_schedule_is_created_once_at_the_configured_time(settings):
    settings.BACKUP_DAILY_AT = "04:15"
    Schedule.objects.filter(name=SCHEDULE_NAME).delete()
    backup_schedule_ensure()
    backup_schedule_ensure()
    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert schedule.schedule_type == Schedule.DAILY and schedule.func == "ops.backups.backup_scheduled"
    assert schedule.next_run.astimezone(UTC).strftime("%H:%M") == "04:15"
    assert timezone.now() < schedule.next_run <= timezone.now() + timedelta(days=1)

    settings.BACKUP_SCHEDULE_ENABLED = False
    backup_schedule_ensure()
    assert not Schedule.objects.filter(name=SCHEDULE_NAME).exists()


def test_next_daily_run_is_later_today_or_tomorrow():
    now = datetime(2025, 6, 30, 10, 0, tzinfo=UTC)
    assert next_daily_run("10:30", now) == datetime(2025, 6, 30, 10, 30, tzinfo=UTC)
    assert next_daily_run("10:00", now) == datetime(2025, 7, 1, 10, 0, tzinfo=UTC)
    assert next_daily_run("03:30", now) == datetime(2025, 7, 1, 3, 30, tzinfo=UTC)


def test_the_scheduled_task_backs_up_verifies_and_prunes(settings):
    very_old = touch_backup(settings.BACKUP_DIR, datetime(2020, 1, 1, tzinfo=UTC))
    summary = backup_scheduled()
    assert "verified" in summary and "pruned 1 backup(s)" in summary
    remaining = backups_list()
    assert len(remaining) == 1 and remaining[0][1] != very_old


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="PostgreSQL only (set DATABASE_URL=postgres://…)",
)
def test_a_deep_check_restores_a_postgresql_dump_into_a_scratch_database(settings, signal_body):
    for n in range(5):
        signal_ingest(payload=signal_body(signal_id=f"pg-{n}"))
    result = backup_create()
    assert result.path.name.endswith("_postgresql.tar.gz")
    verified = backup_verify(result.path, deep=True)
    assert verified.ok, verified.problems
    assert any("row counts match" in check for check in verified.checks)
