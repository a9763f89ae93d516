import importlib
import os

from django.conf import settings
from django.core.management.base import BaseCommand

_MISSING = object()


def effective_display(entry) -> str:
    """The value the service runs with: a setting adjusted after reading (e.g. an interval of 0
    clamped to 1.0) shows the effective value and what was set. Secrets stay masked."""
    shown = entry.display
    if entry.secret:
        return shown
    effective = getattr(settings, entry.key, _MISSING)
    if effective is _MISSING or effective == entry.value:
        return shown
    text = "" if effective is None else str(effective)
    if text == ("" if entry.value is None else str(entry.value)):  # e.g. a Path read as a str
        return shown
    text = entry.redact(text) if entry.redact else text
    return f"{text}  (set: {shown or '(empty)'})"


class Command(BaseCommand):
    help = (
        "Print every effective setting (the value the service uses, e.g. an interval of 0 shows 1.0 "
        "with what was set) and where it came from: environment, .env or default. "
        "Secrets are masked. A value from the environment wins over .env: look here first "
        "when a change in .env seems to have no effect."
    )

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
            self.stdout.write(f"{entry.key.ljust(width)}  {entry.source.ljust(11)}  {effective_display(entry)}")
