"""The signal audit trail: one JSON line per received signal, in `AUDIT_LOG_PATH`.

Rotation (daily and by size, `AUDIT_ROTATE_DAILY` / `AUDIT_MAX_BYTES`): the live file is renamed
to `<name>.<YYYY-MM-DD_HHMMSS>` and gzipped to `<name>.<stamp>.gz`. Writers (threads and
processes) hold a shared `flock` on `<name>.lock` while they open-append-close the file, and the
rotation holds it exclusively while it renames, so every line lands either in the renamed file
(before) or in the fresh one (after), and nobody still writes to a file being compressed.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from lomsite.jsonlog import json_default

_write_lock = threading.Lock()
ROTATED_STAMP = "%Y-%m-%d_%H%M%S"


@contextmanager
def _audit_lock(path: Path, *, exclusive: bool) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def audit_append(record: dict) -> None:
    """Append one line. The file is opened per write so a rotation never loses lines."""
    line = json.dumps({"logged_at": timezone.now().isoformat(), **record}, default=json_default, sort_keys=True) + "\n"
    path = Path(settings.AUDIT_LOG_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    if audit_rotation_due(path):
        audit_rotate(path=path)
    with _write_lock, _audit_lock(path, exclusive=False), open(path, "a", encoding="utf-8") as handle:
        handle.write(line)


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
        stamp = now.astimezone(UTC).strftime(ROTATED_STAMP)
        target, counter = path.with_name(f"{path.name}.{stamp}"), 1
        while target.exists() or target.with_name(target.name + ".gz").exists():
            counter += 1
            target = path.with_name(f"{path.name}.{stamp}-{counter}")
        os.rename(path, target)  # atomic; writers now open (and create) a fresh file
    return _compress(target)


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
