from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from oms.models import OperatorSource
from oms.services.operator_audit import command_actor, operator_action_record
from ops.backups import BackupError, backup_read_manifest, backup_restore, cluster_activity


class Command(BaseCommand):
    help = (
        "Replace the current database (and audit log) with a backup. Nothing is changed unless you "
        "add --yes. Refuses while the django-q cluster is running (seen from a recent auto-close sweep "
        "or task in the last 2 minutes): stop it first, or add --force. Steps: verify the backup, take a "
        "safety backup of the current database (label pre-restore), restore, check the row counts "
        "against the manifest, apply migrations. Exit code 0 on success, 1 otherwise."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the backup (.tar.gz) to restore")
        parser.add_argument("--yes", action="store_true", help="really overwrite the current database")
        parser.add_argument("--force", action="store_true", help="restore even if the cluster looks alive")
        parser.add_argument("--no-audit", action="store_true", help="leave the audit log files as they are")
        parser.add_argument("--actor", default=None, help="who is restoring (default: the OS user)")
        parser.add_argument("--reason", default="", help="why (recorded in the operator audit)")

    def handle(self, *args, file, yes, force, no_audit, actor=None, reason="", **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{path} does not exist")
        try:
            manifest = backup_read_manifest(path)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        summary = (
            f"{path.name}: taken {manifest['created_at']} on {manifest['environment']}, "
            f"{manifest['total_rows']} rows in {len(manifest['tables'])} tables"
        )
        if not yes:
            raise CommandError(
                f"{summary}.\nThis would REPLACE the current database. Nothing was changed. "
                "Run again with --yes to restore."
            )
        activity = cluster_activity()
        if activity and not force:
            raise CommandError(
                f"the django-q cluster seems to be running ({activity}). Stop it first "
                "(systemctl stop loms-cluster), or add --force. Nothing was changed."
            )
        self.stdout.write(summary)
        try:
            result = backup_restore(path=path, restore_audit=not no_audit, progress=self.stdout.write)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        if result.migrate_output.strip():
            self.stdout.write(result.migrate_output.rstrip())
        if result.safety_backup:
            self.stdout.write(f"The database as it was before is in {result.safety_backup}")
        # Recorded in the restored (and migrated) database: a row written before would be overwritten.
        operator_action_record(
            actor=command_actor(actor),
            source=OperatorSource.COMMAND,
            action="restore",
            reason=reason,
            details={
                "file": path.name,
                "taken_at": manifest["created_at"],
                "environment": manifest["environment"],
                "safety_backup": str(result.safety_backup or ""),
                "rows": sum(result.tables.values()),
            },
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored {sum(result.tables.values())} rows in {len(result.tables)} tables into {result.target}; "
                "the counts match the manifest."
            )
        )
