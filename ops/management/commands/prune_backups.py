from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ops.backups import MIN_RETENTION_DAYS, BackupError, backups_prune


class Command(BaseCommand):
    help = (
        f"Delete backups and rotated audit files older than BACKUP_RETENTION_DAYS (default 30). The newest "
        f"backup is never deleted. A retention below {MIN_RETENTION_DAYS} days is refused unless --force."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help=f"retention in days (default BACKUP_RETENTION_DAYS={settings.BACKUP_RETENTION_DAYS})",
        )
        parser.add_argument("--dir", dest="directory", help="prune this directory instead of BACKUP_DIR")
        parser.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
        parser.add_argument("--force", action="store_true", help=f"allow a retention below {MIN_RETENTION_DAYS} days")

    def handle(self, *args, days, directory, dry_run, force, **options):
        try:
            result = backups_prune(directory=directory, retention_days=days, force=force, dry_run=dry_run)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        verb = "would delete" if dry_run else "deleted"
        for path in result.deleted + result.audit_deleted:
            self.stdout.write(f"{verb}: {path}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Retention {result.retention_days} days: {verb} {len(result.deleted)} backup(s) and "
                f"{len(result.audit_deleted)} audit file(s); kept {len(result.kept)} backup(s)."
            )
        )
