from django.core.management.base import BaseCommand, CommandError

from oms.services.epochs import epoch_current, epoch_start, epochs_summary
from oms.services.operator_audit import command_actor


class Command(BaseCommand):
    help = (
        "Start a fresh paper book: positions opened from now on get account_label=NAME. Earlier positions "
        "keep their epoch and stay in the history; open ones are still managed and closed as usual. "
        "Reports filter by epoch (shadow_report uses the current one by default; print_stats and "
        "export_positions take --epoch). Without NAME, list the epochs."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?", help="the new epoch, e.g. shadow-2025-07 (letters, digits, _ . -)")
        parser.add_argument("--actor", default=None, help="who is starting it (default: the OS user)")
        parser.add_argument("--reason", default="", help="why (recorded in the operator audit)")

    def handle(self, *args, name, actor, reason="", **options):
        if name:
            if name == epoch_current():
                raise CommandError(f"{name!r} is already the current epoch")
            try:
                previous, current = epoch_start(name=name, actor=command_actor(actor), reason=reason)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(self.style.SUCCESS(f"New positions now go to epoch {current!r} (was {previous!r})."))
        current = epoch_current()
        self.stdout.write(f"{'epoch':<32} {'positions':>9} {'open':>5}  first → last")
        for row in epochs_summary():
            marker = " (current)" if row["epoch"] == current else ""
            self.stdout.write(
                f"{row['epoch'] + marker:<32} {row['positions']:>9} {row['open']:>5}  "
                f"{row['first']:%Y-%m-%d} → {row['last']:%Y-%m-%d}"
            )
        if not any(row["epoch"] == current for row in epochs_summary()):
            self.stdout.write(f"{current + ' (current)':<32} {0:>9} {0:>5}")
