from django.core.management.base import BaseCommand, CommandError

from ops.backups import BackupError, backup_create, backup_verify


class Command(BaseCommand):
    help = (
        "Back up the database and the audit log into one compressed file under BACKUP_DIR "
        "(default data/backups/), named YYYY-MM-DD_HHMMSS_loms_<env>_<engine>.tar.gz, with a manifest "
        "(row counts per table, checksums, app version, migrations). Safe while the web server and "
        "the cluster keep running. The new file is verified before the command reports success. "
        "Exit code 0 on success, 1 on failure."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dir", dest="directory", help="write the backup here instead of BACKUP_DIR")
        parser.add_argument(
            "--label", default="", help="a word added to the file name, e.g. before-upgrade (a-z, 0-9, '-')"
        )
        parser.add_argument("--no-verify", action="store_true", help="skip the verification of the new file")

    def handle(self, *args, directory, label, no_verify, **options):
        try:
            result = backup_create(directory=directory, label=label, progress=self.stdout.write)
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        manifest = result.manifest
        size_kb = result.path.stat().st_size / 1024
        self.stdout.write(
            f"{len(manifest['tables'])} tables, {manifest['total_rows']} rows, "
            f"{manifest['migrations']['count']} migrations, {size_kb:.1f} KiB"
        )
        if not no_verify:
            verified = backup_verify(result.path, progress=self.stdout.write)
            if not verified.ok:
                raise CommandError(f"{result.path} was written but does not verify: " + "; ".join(verified.problems))
        self.stdout.write(self.style.SUCCESS(f"Backup written: {result.path}"))
