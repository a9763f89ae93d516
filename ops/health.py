"""The operations checks `/health` runs beside the trading ones (appended to HEALTH_CHECKS by OpsConfig)."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from oms.services.health import HealthContext, Reason
from ops.backups import FORMAT_VERSION, backups_list


@lru_cache(maxsize=1)
def _installed_at() -> datetime | None:
    """When the database was created (its first migration): read once per process, as it never
    changes (`/health` runs this check on every request while no backup exists)."""
    from django.db.migrations.recorder import MigrationRecorder

    row = MigrationRecorder.Migration.objects.filter(app="oms", name="0001_initial").first()
    return row.applied if row else None


@lru_cache(maxsize=64)
def _looks_good(path: Path, size: int, mtime_ns: int) -> bool:
    """A backup file that opens and starts with its manifest (written first by `backup_create`):
    a cheap check, cached per file version. `verify_backup` is the full one."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            first = archive.next()
            handle = archive.extractfile(first) if first is not None and first.name == "manifest.json" else None
            return handle is not None and json.loads(handle.read()).get("format") == FORMAT_VERSION
    except (tarfile.TarError, OSError, EOFError, ValueError):
        return False


def last_good_backup() -> tuple[datetime, Path] | None:
    """The newest backup that looks good (an empty or damaged file never counts)."""
    for taken, path in reversed(backups_list()):
        stat = path.stat()
        if _looks_good(path, stat.st_size, stat.st_mtime_ns):
            return taken, path
    return None


def check_backup_age(ctx: HealthContext) -> Iterable[Reason]:
    """The newest good backup must be younger than BACKUP_MAX_AGE_HOURS (0: not checked). Without
    any, an installation older than that limit is degraded too."""
    hours = settings.BACKUP_MAX_AGE_HOURS
    if not hours:
        return
    limit = timedelta(hours=hours)
    found = last_good_backup()
    if found:
        taken, path = found
        if ctx.now - taken > limit:
            age = (ctx.now - taken).total_seconds() / 3600
            yield Reason("backup_old", f"the last backup is {age:.0f} h old (limit {hours:g} h)", f"{path}")
        return
    installed = _installed_at()
    if installed and ctx.now - installed > limit:
        yield Reason(
            "backup_missing",
            f"no good backup exists (limit {hours:g} h)",
            f"none in {settings.BACKUP_DIR}; installed {installed.isoformat()}",
        )
