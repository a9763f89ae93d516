import importlib
import os

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = ("Print every effective setting and where it came from: environment, .env or default. "
            "Secrets are masked. A value from the environment wins over .env: look here first "
            "when a change in .env seems to have no effect.")

    def add_arguments(self, parser):
        parser.add_argument("--source", choices=("environment", ".env", "default"), help="only keys from this source")

    def handle(self, *args, source=None, **options):
        config = importlib.import_module(os.environ.get("DJANGO_SETTINGS_MODULE", "lomsite.settings")).env
        entries = [e for e in config.report() if source is None or e.source == source]
        width = max((len(e.key) for e in entries), default=10)
        env_file = config.env_file if config.env_file and config.env_file.is_file() else "(none)"
        self.stdout.write(f".env file: {env_file}")
        self.stdout.write(f"{'KEY'.ljust(width)}  {'SOURCE'.ljust(11)}  VALUE")
        for entry in entries:
            self.stdout.write(f"{entry.key.ljust(width)}  {entry.source.ljust(11)}  {entry.display}")
