"""The operations checks `/health` runs beside the trading ones (appended to HEALTH_CHECKS by OpsConfig)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings

from oms.services.health import HealthContext, Reason
from ops.backups import backups_list


def _installed_at() -> datetime | None:
    from django.db.migrations.recorder import MigrationRecorder

    row = MigrationRecorder.Migration.objects.filter(app="oms", name="0001_initial").first()
    return row.applied if row else None


def check_backup_age(ctx: HealthContext) -> Iterable[Reason]:
    """The newest backup must be younger than BACKUP_MAX_AGE_HOURS (0: not checked). Without any
    backup, an installation older than that limit is degraded too."""
    hours = settings.BACKUP_MAX_AGE_HOURS
    if not hours:
        return
    limit = timedelta(hours=hours)
    found = backups_list()
    if found:
        taken, path = found[-1]
        if ctx.now - taken > limit:
            age = (ctx.now - taken).total_seconds() / 3600
            yield Reason("backup_old", f"the last backup is {age:.0f} h old (limit {hours:g} h)", f"{path}")
        return
    installed = _installed_at()
    if installed and ctx.now - installed > limit:
        yield Reason("backup_missing", f"no backup exists (limit {hours:g} h)",
                     f"none in {settings.BACKUP_DIR}; installed {installed.isoformat()}")
