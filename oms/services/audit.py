"""The signal audit trail: one JSON line per received signal, in `AUDIT_LOG_PATH`.

Rotation (daily and by size, `AUDIT_ROTATE_DAILY` / `AUDIT_MAX_BYTES`): the live file is renamed
to `<name>.<YYYY-MM-DD_HHMMSS>` and gzipped to `<name>.<stamp>.gz`. Writers (threads and
processes) hold a shared `flock` on `<name>.lock` while they open-append-close the file, and the
rotation holds it exclusively while it renames, so every line lands either in the renamed file
(before) or in the fresh one (after), and nobody still writes to a file being compressed. A restore
(`audit_replace_live`) renames the current trail and puts the restored file in its place in one
step under that exclusive lock, so no line written meanwhile is overwritten.

Nothing the bot was told is lost: the line of a signal is appended after its transaction commits.
If the append fails (disk full, permissions…), the answer is unchanged (the bot is told the truth:
the position exists), the line is spooled in the database (`AuditSpool`), `audit_spool_pending()`
counts it for `/health`, and the next append (or `audit_recover`) writes it. A process killed
between the commit and the append leaves a committed `Signal` row without a line:
`audit_recover()` (run by `manage.py serve` at start-up, and by `manage.py audit_recover`) writes
the line of every committed signal of the last hours missing from the trail, keyed by
`signal_row_id`, so each committed signal ends up with exactly one line.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from lomsite.jsonlog import json_default, log_event

logger = logging.getLogger("loms.oms")
_write_lock = threading.Lock()
ROTATED_STAMP = "%Y-%m-%d_%H%M%S"
RECOVER_WINDOW_HOURS = 48  # how far back audit_recover() looks for committed signals without a line
SPOOL_CHECK_SEC = 30  # how often a process looks for lines spooled by another one
_memory_spool: list[tuple[int | None, str]] = []  # when even the database refused the spool
SPOOL_RETRY_SEC = 5  # after a failed flush, appends wait this long before trying again
_spool_state = {"next_check": 0.0, "pending_here": False, "retry_after": 0.0}


@contextmanager
def _audit_lock(path: Path, *, exclusive: bool) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def audit_line(record: dict) -> str:
    return json.dumps({"logged_at": timezone.now().isoformat(), **record}, default=json_default, sort_keys=True) + "\n"


def _write_lines(lines: list[str], path: Path | None = None) -> None:
    """Append whole lines to the live file (rotating first if due). Raises OSError."""
    if not lines:
        return
    path = Path(path or settings.AUDIT_LOG_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    if audit_rotation_due(path):
        audit_rotate(path=path)
    with _write_lock, _audit_lock(path, exclusive=False), open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(lines))


def audit_append(record: dict) -> bool:
    """Append one line; the file is opened per write so a rotation never loses lines.

    Called after the commit of what it records. It never raises for a failed write: the line is
    spooled (see the module docstring) and False is returned.
    """
    line = audit_line(record)
    now = time.monotonic()
    if (_spool_state["pending_here"] or _memory_spool or now >= _spool_state["next_check"]) and now >= _spool_state[
        "retry_after"
    ]:
        _flush_quietly()  # spooled lines first, so the trail keeps its order
    try:
        _write_lines([line])
    except OSError as exc:
        _spool([(record.get("signal_row_id"), line)], exc)
        return False
    return True


def _spool(entries: list[tuple[int | None, str]], exc: BaseException) -> None:
    from oms.models import AuditSpool

    error = f"{type(exc).__name__}: {exc}"[:300]
    try:
        AuditSpool.objects.bulk_create(
            [AuditSpool(signal_row_id=signal_row_id, line=line, error=error) for signal_row_id, line in entries]
        )
        _spool_state["pending_here"] = True
    except DatabaseError:
        _memory_spool.extend(entries)  # last resort: this process retries at its next append
    log_event(
        logger,
        "audit_spooled",
        level=logging.ERROR,
        lines=len(entries),
        error=error,
        signal_row_ids=[signal_row_id for signal_row_id, _ in entries],
    )


def _flush_quietly() -> None:
    try:
        audit_spool_flush()
    except Exception as exc:  # still failing: stays spooled, health stays degraded; the append goes on
        _spool_state["retry_after"] = time.monotonic() + SPOOL_RETRY_SEC  # not a retry per signal
        log_event(logger, "audit_spool_flush_failed", level=logging.WARNING, error=type(exc).__name__)
    else:
        _spool_state["retry_after"] = 0.0


def audit_spool_pending(*, spooled: int | None = None) -> int:
    """Audit lines accepted but not yet in the trail (spooled after a failed write). `/health`
    should be degraded while this is above 0. `spooled`: the database's count when the caller
    has just read it (the health report reads it with the monitor)."""
    from oms.models import AuditSpool

    return (AuditSpool.objects.count() if spooled is None else spooled) + len(_memory_spool)


def audit_spool_flush() -> int:
    """Write the spooled lines (oldest first) and drop them from the spool; the number written.

    Raises OSError if the trail still cannot be written (the lines then stay spooled).
    """
    with _maintenance_lock(Path(settings.AUDIT_LOG_PATH)) as acquired:
        return _flush_spool() if acquired else 0


def _flush_spool() -> int:
    from oms.models import AuditSpool

    _spool_state["next_check"] = time.monotonic() + SPOOL_CHECK_SEC
    if _memory_spool:
        entries = list(_memory_spool)
        present = _signal_ids_in_trail(since=timezone.now() - timedelta(hours=RECOVER_WINDOW_HOURS))
        _write_lines([line for signal_row_id, line in entries if signal_row_id is None or signal_row_id not in present])
        del _memory_spool[: len(entries)]
    if not AuditSpool.objects.exists():  # the usual case: no write transaction at all
        _spool_state["pending_here"] = False
        return 0
    with transaction.atomic():
        rows = list(AuditSpool.objects.select_for_update(skip_locked=True).order_by("id")[:1000])
        if not rows:
            _spool_state["pending_here"] = False
            return 0
        # A flush killed between its write and its commit already wrote some: never write twice.
        present = _signal_ids_in_trail(since=min(row.created_at for row in rows))
        lines = [row.line for row in rows if row.signal_row_id is None or row.signal_row_id not in present]
        _write_lines(lines)
        AuditSpool.objects.filter(pk__in=[row.pk for row in rows]).delete()
    log_event(logger, "audit_spool_flushed", lines=len(lines))
    return len(lines)


@contextmanager
def _maintenance_lock(path: Path) -> Iterator[bool]:
    """One flush or recovery at a time across processes; yields False if another one runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".recover.lock"), "a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _trail_lines(path: Path, since: datetime | None) -> Iterable[str]:
    """Every line of the rotated files that may hold lines logged since `since`, then the live file."""
    for rotated_at, rotated in audit_rotated_files(path):
        if since is not None and rotated_at < since:
            continue  # rotated before `since`: holds only older lines
        opener = gzip.open if rotated.suffix == ".gz" else open
        try:
            with opener(rotated, "rt", encoding="utf-8", errors="replace") as handle:
                yield from handle
        except (OSError, EOFError):  # compressed meanwhile, or a damaged file: skip it
            continue
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            yield from handle
    except FileNotFoundError:
        return


def _signal_ids_in_trail(*, since: datetime | None, path: Path | None = None) -> set[int]:
    path = Path(path or settings.AUDIT_LOG_PATH)
    since = since - timedelta(minutes=10) if since else None  # clock differences between hosts
    found = set()
    for line in _trail_lines(path, since):
        if '"signal_row_id"' not in line:
            continue
        try:
            signal_row_id = json.loads(line).get("signal_row_id")
        except ValueError:  # a line being appended right now
            continue
        if isinstance(signal_row_id, int):
            found.add(signal_row_id)
    return found


def signal_audit_record(row) -> dict:
    """The audit record of a stored `Signal`, as the intake writes it (used by the recovery)."""
    record = {
        "signal_row_id": row.pk,
        "outcome": row.outcome,
        "reason": row.reason,
        "payload": row.payload,
        "received_at": row.received_at,
    }
    if row.dedupe_key or row.duplicate_of_id:
        record["dedupe_key"] = row.dedupe_key or (row.duplicate_of.dedupe_key if row.duplicate_of else None)
    if row.outcome != "rejected":
        record["response"] = row.response
    return record


@dataclass
class RecoverResult:
    skipped: bool = False  # another flush or recovery was running
    flushed: int = 0  # spooled lines written
    checked: int = 0  # committed signals looked for in the trail
    recovered: list[int] = field(default_factory=list)  # signals whose missing line was written


def audit_recover(
    *, grace_sec: float = 30, window_hours: float = RECOVER_WINDOW_HOURS, now: datetime | None = None
) -> RecoverResult:
    """Write the spooled lines, then the line of every committed signal of the last `window_hours`
    that has none in the trail (rotated files included), keyed by `signal_row_id`.

    Signals younger than `grace_sec` are left alone: a live process may be about to append their
    line. At start-up, before anything serves, `grace_sec=0` is safe. Raises OSError if the trail
    cannot be written.
    """
    from oms.models import AuditSpool, Signal

    path = Path(settings.AUDIT_LOG_PATH)
    with _maintenance_lock(path) as acquired:
        if not acquired:
            return RecoverResult(skipped=True)
        result = RecoverResult(flushed=_flush_spool())
        now = now or timezone.now()
        spooled = set(AuditSpool.objects.exclude(signal_row_id=None).values_list("signal_row_id", flat=True))
        committed = dict(
            Signal.objects.filter(
                received_at__gte=now - timedelta(hours=window_hours),
                received_at__lte=now - timedelta(seconds=grace_sec),
            ).values_list("pk", "received_at")
        )
        result.checked = len(committed)
        if not committed:
            return result
        present = _signal_ids_in_trail(since=min(committed.values()), path=path)
        missing = sorted(set(committed) - present - spooled)
        if missing:
            rows = Signal.objects.filter(pk__in=missing).select_related("duplicate_of").order_by("pk")
            _write_lines([audit_line({**signal_audit_record(row), "recovered": True}) for row in rows], path)
            result.recovered = missing
            log_event(logger, "audit_recovered", level=logging.WARNING, lines=len(missing), signal_row_ids=missing[:50])
        return result


def audit_rotation_due(path: Path, *, now: datetime | None = None) -> bool:
    """True when the live file reached `AUDIT_MAX_BYTES` or was last written on an earlier UTC day."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    if stat.st_size == 0:
        return False
    if settings.AUDIT_MAX_BYTES and stat.st_size >= settings.AUDIT_MAX_BYTES:
        return True
    if settings.AUDIT_ROTATE_DAILY:
        today = (now or timezone.now()).astimezone(UTC).date()
        return datetime.fromtimestamp(stat.st_mtime, UTC).date() < today
    return False


def audit_rotate(*, path: Path | None = None, force: bool = False, now: datetime | None = None) -> Path | None:
    """Rotate the live audit file if due (or `force`): rename, then gzip. Returns the .gz or None."""
    path = Path(path or settings.AUDIT_LOG_PATH)
    if not path.exists():
        return None
    now = now or timezone.now()
    with _audit_lock(path, exclusive=True):
        # Re-checked under the lock: another process may have rotated in the meantime.
        if not (force and path.stat().st_size > 0) and not audit_rotation_due(path, now=now):
            return None
        target = _rotation_target(path, now)
        os.rename(path, target)  # atomic; writers now open (and create) a fresh file
    return _compress(target)


def _rotation_target(path: Path, now: datetime) -> Path:
    stamp = now.astimezone(UTC).strftime(ROTATED_STAMP)
    target, counter = path.with_name(f"{path.name}.{stamp}"), 1
    while target.exists() or target.with_name(target.name + ".gz").exists():
        counter += 1
        target = path.with_name(f"{path.name}.{stamp}-{counter}")
    return target


def audit_replace_live(source: Path, *, path: Path | None = None, now: datetime | None = None) -> Path | None:
    """Put a copy of `source` (a restored trail) in place of the live file; the current trail is
    kept, rotated and compressed, next to it (returned, or None if it was empty).

    The rename of the current file and the replace happen in one step under the exclusive lock:
    a line appended meanwhile lands in the old trail (before) or after the restored lines (after),
    never in a file that is then overwritten.
    """
    path = Path(path or settings.AUDIT_LOG_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".restoring")
    shutil.copy2(source, staging)  # the long copy happens before the lock: writers are not held up
    target = None
    with _audit_lock(path, exclusive=True):
        if path.exists() and path.stat().st_size > 0:
            target = _rotation_target(path, now or timezone.now())
            os.rename(path, target)
        os.replace(staging, path)
    return _compress(target) if target else None


def _compress(plain: Path) -> Path:
    packed, partial = plain.with_name(plain.name + ".gz"), plain.with_name(plain.name + ".gz.partial")
    with open(plain, "rb") as source, gzip.open(partial, "wb") as sink:
        shutil.copyfileobj(source, sink)
    os.replace(partial, packed)
    plain.unlink()
    return packed


def audit_rotated_pattern(path: Path) -> re.Pattern:
    return re.compile(rf"^{re.escape(path.name)}\.(\d{{4}}-\d{{2}}-\d{{2}}_\d{{6}})(?:-(\d+))?(\.gz)?$")


def audit_rotated_files(path: Path | None = None) -> list[tuple[datetime, Path]]:
    """Rotated audit files (compressed or not) with their rotation time, oldest first."""
    path = Path(path or settings.AUDIT_LOG_PATH)
    if not path.parent.is_dir():
        return []
    pattern, found = audit_rotated_pattern(path), []
    for candidate in path.parent.iterdir():
        match = pattern.match(candidate.name)
        if match:
            rotated_at = datetime.strptime(match.group(1), ROTATED_STAMP).replace(tzinfo=UTC)
            found.append((rotated_at, int(match.group(2) or 1), candidate))  # same second: by counter
    return [(rotated_at, file) for rotated_at, _, file in sorted(found)]


def audit_compress_leftovers(path: Path | None = None) -> list[Path]:
    """Compress rotated files left plain by an interrupted rotation."""
    return [_compress(file) for _, file in audit_rotated_files(path) if file.suffix != ".gz"]
