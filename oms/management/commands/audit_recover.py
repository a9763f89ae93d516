from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from oms.services.audit import RECOVER_WINDOW_HOURS, audit_recover

MAX_HOURS = 24 * 366 * 10  # ten years: more is a typo


class Command(BaseCommand):
    help = (
        "Complete the signal audit trail: write the spooled lines, then the line of every committed signal "
        "of the last hours that has none (a process killed between its commit and its append). Each "
        "committed signal ends up with exactly one line. `serve` runs this at start-up."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--hours",
            type=float,
            default=RECOVER_WINDOW_HOURS,
            help=f"look at the signals of the last HOURS hours (default {RECOVER_WINDOW_HOURS})",
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=30.0,
            help="leave signals younger than this many seconds alone (a live process may be about "
            "to append their line; default 30, 0 only when nothing serves)",
        )

    def handle(self, *args, hours, grace, **options):
        if not (0 < hours <= MAX_HOURS and 0 <= grace <= MAX_HOURS * 3600):
            raise CommandError(f"--hours must be in (0, {MAX_HOURS}] and --grace in [0, {MAX_HOURS * 3600}] seconds")
        try:
            result = audit_recover(grace_sec=grace, window_hours=hours)
        except (OSError, DatabaseError) as exc:
            raise CommandError(f"the audit trail could not be completed: {type(exc).__name__}: {exc}") from None
        if result.skipped:
            self.stdout.write("Another recovery or spool flush is running; nothing done.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Audit trail complete: {result.flushed} spooled line(s) written, {len(result.recovered)} missing "
                f"line(s) recovered, {result.checked} committed signal(s) checked."
            )
        )
