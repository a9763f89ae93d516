import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ops.backups import backup_verify


class Command(BaseCommand):
    help = (
        "Check a backup file: the archive opens, every file matches its checksum, the database copy "
        "passes its integrity check and has exactly the row counts of the manifest. "
        "Exit code 0 when the backup is good, 1 when it is not."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the backup (.tar.gz) to check")
        parser.add_argument(
            "--deep",
            action="store_true",
            help="PostgreSQL dumps: also restore into a throw-away database and count the rows "
            "(needs the right to create databases)",
        )
        parser.add_argument("--show-manifest", action="store_true", help="print the manifest as JSON")

    def handle(self, *args, file, deep, show_manifest, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{path} does not exist")
        result = backup_verify(path, deep=deep, progress=self.stdout.write)
        manifest = result.manifest or {}
        if manifest:
            self.stdout.write(
                f"taken {manifest.get('created_at')} on {manifest.get('environment')}, "
                f"app {manifest.get('app_version')}, {manifest.get('database', {}).get('vendor')}, "
                f"{manifest.get('total_rows')} rows"
            )
        if show_manifest and manifest:
            self.stdout.write(json.dumps(manifest, indent=2, sort_keys=True))
        for check in result.checks:
            self.stdout.write(f"  ok: {check}")
        for problem in result.problems:
            self.stdout.write(self.style.ERROR(f"  PROBLEM: {problem}"))
        if not result.ok:
            raise CommandError(f"{path.name} is NOT a good backup")
        self.stdout.write(self.style.SUCCESS(f"{path.name} is good"))
