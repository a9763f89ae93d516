"""Nothing the bot was told is lost from the audit trail, and nothing is told that did not happen.

- a failed append still answers the truth, spools the line, degrades health, and writes it later;
- a process dying between the commit and the append: `audit_recover` writes the missing line once;
- a restore during traffic overwrites no line;
- `POST /orders` positions get a ledger row and an audit line;
- `position_opened` is logged after the commit, never for a rolled-back position.

The same guarantee with a real server killed by SIGKILL: `tests/test_audit_kill.py`.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import threading
from collections import Counter
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction

from oms.models import AuditSpool, Position, Signal, SignalOutcome
from oms.services import audit as audit_service
from oms.services.audit import audit_append, audit_recover, audit_rotate, audit_rotated_files, audit_spool_pending
from oms.services.health import health_report
from oms.services.positions import PositionRequest, position_open
from oms.services.signals import signal_ingest
from ops.backups import backup_create, backup_restore


def trail(live: Path) -> list[dict]:
    """Every line of the trail, rotated files first."""
    lines = []
    for _, rotated in audit_rotated_files(live):
        opener = gzip.open if rotated.suffix == ".gz" else open
        with opener(rotated, "rt", encoding="utf-8") as handle:
            lines += [json.loads(line) for line in handle]
    if live.is_file():
        lines += [json.loads(line) for line in live.read_text().splitlines()]
    return lines


def lines_per_signal(live: Path) -> Counter:
    return Counter(line["signal_row_id"] for line in trail(live) if "signal_row_id" in line)


def post(client, body, path="/signals/bounce"):
    return client.post(path, data=json.dumps(body), content_type="application/json")


@pytest.fixture(autouse=True)
def _fresh_spool_state(monkeypatch):
    monkeypatch.setattr(audit_service, "_memory_spool", [])
    monkeypatch.setattr(audit_service, "_spool_state", {"next_check": 0.0, "pending_here": False, "retry_after": 0.0})


# --- a failed append --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_audit_write_still_answers_the_truth_then_the_spooled_line_is_written_once(
    anon_client, signal_body, settings
):
    live = Path(settings.AUDIT_LOG_PATH)
    live.mkdir(parents=True)  # the trail cannot be written: opening it fails with IsADirectoryError

    response = post(anon_client, signal_body(symbol="ETHUSDT"))

    assert response.status_code == 200  # before: 500, although the position had been opened
    body = response.json()
    assert body["risk_ok"] is True and Position.objects.filter(pk=body["position_id"], status="open").exists()
    assert audit_spool_pending() == 1
    row = Signal.objects.get()
    assert AuditSpool.objects.get().signal_row_id == row.pk
    assert "audit_spooled" in [reason["code"] for reason in health_report()["reasons"]]

    live.rmdir()  # the disk is writable again: the next signal's append writes the spooled line first
    second = post(anon_client, signal_body(symbol="SOLUSDT"))
    assert second.status_code == 200
    assert audit_spool_pending() == 0
    assert "audit_spooled" not in [reason["code"] for reason in health_report()["reasons"]]
    lines = trail(live)
    assert [line["signal_row_id"] for line in lines] == [row.pk, row.pk + 1]
    assert lines[0]["response"] == body


@pytest.mark.django_db
def test_the_spool_is_written_by_the_recovery_too_and_never_twice(signal_body, settings):
    live = Path(settings.AUDIT_LOG_PATH)
    live.mkdir(parents=True)
    signal_ingest(payload=signal_body())
    signal_ingest(payload={"symbol": "BTCUSDT"})  # rejected, spooled too
    assert audit_spool_pending() == 2
    live.rmdir()
    result = audit_recover(grace_sec=0)
    assert result.flushed == 2 and result.recovered == []
    assert audit_recover(grace_sec=0).flushed == 0
    assert lines_per_signal(live) == {row.pk: 1 for row in Signal.objects.all()}
    assert audit_spool_pending() == 0


@pytest.mark.django_db
def test_during_an_outage_appends_do_not_retry_the_spool_for_every_signal(signal_body, settings, caplog):
    live = Path(settings.AUDIT_LOG_PATH)
    live.mkdir(parents=True)
    for n in range(5):
        assert signal_ingest(payload=signal_body(signal_id=f"outage-{n}")).status_code == 200
    assert audit_spool_pending() == 5
    failed_flushes = [r for r in caplog.records if r.getMessage() == "audit_spool_flush_failed"]
    assert len(failed_flushes) == 1  # then it waits SPOOL_RETRY_SEC
    live.rmdir()
    assert audit_recover(grace_sec=0).flushed == 5
    assert [line["signal_row_id"] for line in trail(live)] == sorted(Signal.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_when_even_the_spool_table_refuses_the_line_is_kept_in_memory_and_written_once(
    signal_body, settings, monkeypatch
):
    from django.db import DatabaseError

    live = Path(settings.AUDIT_LOG_PATH)
    live.mkdir(parents=True)

    def refuse(*args, **kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(AuditSpool.objects, "bulk_create", refuse)
    first = signal_ingest(payload=signal_body(signal_id="memory")).signal
    assert audit_spool_pending() == 1 and AuditSpool.objects.count() == 0
    live.rmdir()
    audit_recover(grace_sec=0)  # the recovery of another process writes it from the ledger meanwhile
    second = signal_ingest(payload=signal_body(signal_id="after")).signal  # flushes this process's memory
    assert audit_spool_pending() == 0
    assert lines_per_signal(live) == {first.pk: 1, second.pk: 1}


# --- a process dying between the commit and the append ------------------------------------------------


@pytest.mark.django_db
def test_a_line_lost_between_commit_and_append_is_recovered_exactly_once(signal_body, settings, monkeypatch):
    live = Path(settings.AUDIT_LOG_PATH)
    kept = signal_ingest(payload=signal_body(signal_id="kept")).signal
    audit_rotate(path=live, force=True)  # its line now lives in a rotated, compressed file
    # The process "dies" after each commit, before its append: the rows are committed, no line.
    monkeypatch.setattr("oms.services.signals.audit_append", lambda record: None)
    opened = signal_ingest(payload=signal_body(signal_id="lost")).signal
    duplicate = signal_ingest(payload=signal_body(signal_id="lost")).signal
    rejected = signal_ingest(payload={"symbol": "BTCUSDT", "side": "sideways"}).signal
    monkeypatch.undo()
    assert lines_per_signal(live) == {kept.pk: 1}

    call_command("audit_recover", "--grace", "0")
    call_command("audit_recover", "--grace", "0")  # a second pass finds nothing missing

    assert lines_per_signal(live) == {kept.pk: 1, opened.pk: 1, duplicate.pk: 1, rejected.pk: 1}
    recovered = {line["signal_row_id"]: line for line in trail(live) if line.get("recovered")}
    assert set(recovered) == {opened.pk, duplicate.pk, rejected.pk}
    assert recovered[opened.pk]["outcome"] == "opened"
    assert recovered[opened.pk]["response"]["position_id"] == opened.position_id
    assert recovered[duplicate.pk]["dedupe_key"] == opened.dedupe_key
    assert recovered[rejected.pk]["outcome"] == "rejected"


@pytest.mark.django_db
def test_the_recovery_leaves_signals_younger_than_the_grace_to_their_process(signal_body, settings, monkeypatch):
    monkeypatch.setattr("oms.services.signals.audit_append", lambda record: None)
    signal_ingest(payload=signal_body())
    monkeypatch.undo()
    assert audit_recover(grace_sec=30).recovered == []
    assert len(audit_recover(grace_sec=0).recovered) == 1


# --- restore during traffic ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_line_appended_during_a_restore_is_not_overwritten(settings, tmp_path, monkeypatch):
    settings.BACKUP_DIR = tmp_path / "backups"
    live = Path(settings.AUDIT_LOG_PATH)
    audit_append({"n": "in the backup"})
    backup = backup_create().path
    audit_append({"n": "after the backup"})
    copy2 = shutil.copy2

    def copy_while_traffic_goes_on(source, dest, **kwargs):
        if str(dest).endswith(".restoring"):  # the restored trail is being put in place
            writer = threading.Thread(target=audit_append, args=({"n": "during the restore"},))
            writer.start()
            writer.join(timeout=0.5)  # it either landed, or waits for the audit lock
            copy_while_traffic_goes_on.writer = writer
        return copy2(source, dest, **kwargs)

    monkeypatch.setattr(shutil, "copy2", copy_while_traffic_goes_on)
    backup_restore(path=backup, safety_backup=False)
    copy_while_traffic_goes_on.writer.join()
    monkeypatch.undo()

    written = Counter(line["n"] for line in trail(live) if "n" in line)
    # before the fix: the line written between the rotation and the replace was overwritten
    assert written["during the restore"] == 1
    assert written["after the backup"] == 1  # kept in the rotated pre-restore trail
    assert [json.loads(line)["n"] for line in live.read_text().splitlines()][0] == "in the backup"


@pytest.mark.django_db(transaction=True)
def test_no_line_is_lost_when_a_restore_runs_during_continuous_appends(settings, tmp_path):
    settings.BACKUP_DIR = tmp_path / "backups"
    live = Path(settings.AUDIT_LOG_PATH)
    audit_append({"n": -1})
    backup = backup_create().path
    done, count = threading.Event(), [0]

    def write() -> None:
        while not done.is_set():
            audit_append({"n": count[0]})
            count[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(3):
            backup_restore(path=backup, safety_backup=False)
    finally:
        done.set()
        writer.join()
    numbers = Counter(line["n"] for line in trail(live) if "n" in line)
    assert count[0] > 0
    assert all(numbers[n] == 1 for n in range(count[0])), "a line appended during a restore was lost"


# --- POST /orders ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_post_orders_records_a_ledger_row_and_an_audit_line(operator_client, settings):
    response = operator_client.post(
        "/orders",
        data={"symbol": "solusdt", "side": "BUY", "qty": 2, "entry_price": 150, "tp_price": 160},
        format="json",
    )
    assert response.status_code == 201
    position_id = response.json()["position_id"]
    row = Signal.objects.get()
    assert row.outcome == SignalOutcome.OPENED and row.position_id == position_id
    assert row.symbol == "SOLUSDT" and row.reason.startswith("POST /orders by ")
    assert row.response["order_id"] == response.json()["id"] and row.response["sl_price"] is None
    lines = trail(Path(settings.AUDIT_LOG_PATH))
    assert len(lines) == 1 and lines[0]["signal_row_id"] == row.pk and lines[0]["source"] == "orders_api"
    assert lines[0]["response"]["position_id"] == position_id


@pytest.mark.django_db
def test_a_refused_post_orders_leaves_no_ledger_row(operator_client, settings):
    settings.MAX_OPEN_POSITIONS = 0
    response = operator_client.post(
        "/orders", data={"symbol": "BTCUSDT", "side": "long", "qty": 1, "entry_price": 100}, format="json"
    )
    assert response.status_code >= 400
    assert not Signal.objects.exists() and not Position.objects.exists()


# --- position_opened ---------------------------------------------------------------------------------


def opened_events(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage() == "position_opened"]


def request() -> PositionRequest:
    return PositionRequest(
        symbol="BTCUSDT", side="long", qty=1, entry_price=100, tp_price=None, sl_price=None, exchange="bitget"
    )


@pytest.mark.django_db(transaction=True)
def test_position_opened_is_never_logged_for_a_rolled_back_position(caplog):
    caplog.set_level(logging.INFO)
    with pytest.raises(RuntimeError), transaction.atomic():
        position_open(request=request())
        raise RuntimeError("the surrounding transaction fails")
    assert not Position.objects.exists()
    assert opened_events(caplog) == []  # before: logged inside the transaction that was rolled back


@pytest.mark.django_db(transaction=True)
def test_position_opened_is_logged_once_after_the_commit(caplog):
    caplog.set_level(logging.INFO)
    with transaction.atomic():
        opened = position_open(request=request())
        assert opened_events(caplog) == []  # not yet committed
    assert [record.position_id for record in opened_events(caplog)] == [opened.position.pk]


@pytest.mark.django_db
def test_the_one_minute_tick_writes_the_spool_when_no_signal_comes(anon_client, signal_body, settings):
    """Health must not stay degraded while the bot is quiet: the tick writes the spooled lines."""
    from oms.services.notify import notify_tick

    live = Path(settings.AUDIT_LOG_PATH)
    live.mkdir(parents=True)  # the trail cannot be written
    assert post(anon_client, signal_body(symbol="ETHUSDT")).status_code == 200
    assert notify_tick()["audit_spool_written"].startswith("error: ")  # still broken: said, and the tick goes on
    assert audit_spool_pending() == 1
    live.rmdir()
    assert notify_tick()["audit_spool_written"] == 1
    assert audit_spool_pending() == 0 and [line["signal_row_id"] for line in trail(live)] == [Signal.objects.get().pk]
