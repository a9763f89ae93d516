from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from oms.management.commands._cli import fmt
from oms.selectors import epoch_equity
from oms.services.epochs import epoch_current, epoch_start, epochs_summary
from oms.services.operator_audit import command_actor


def capital_value(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise CommandError(f"--capital must be a number, not {text!r}") from None


class Command(BaseCommand):
    help = (
        "Start a fresh paper book: positions opened from now on get account_label=NAME. Earlier positions "
        "keep their epoch and stay in the history; open ones are still managed and closed as usual. "
        "The epoch starts with --capital USDT (default STARTING_CAPITAL_USDT): its equity is that capital "
        "plus the net PnL of its closed trades, what RISK_PER_TRADE_PCT sizes signals by. "
        "Reports filter by epoch (shadow_report uses the current one by default; print_stats and "
        "export_positions take --epoch). Without NAME, list the epochs with their equity."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?", help="the new epoch, e.g. shadow-2025-07 (letters, digits, _ . -)")
        parser.add_argument("--capital", type=capital_value, help="its starting capital in USDT")
        parser.add_argument("--actor", default=None, help="who is starting it (default: the OS user)")
        parser.add_argument("--reason", default="", help="why (recorded in the operator audit)")

    def handle(self, *args, name, actor, capital=None, reason="", **options):
        if capital is not None and not name:
            raise CommandError("--capital needs the NAME of the new epoch")
        if name:
            if name == epoch_current():
                raise CommandError(f"{name!r} is already the current epoch")
            try:
                previous, current = epoch_start(name=name, capital=capital, actor=command_actor(actor), reason=reason)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(self.style.SUCCESS(f"New positions now go to epoch {current!r} (was {previous!r})."))
        current = epoch_current()
        summary = epochs_summary()
        self.stdout.write(
            f"{'epoch':<32} {'positions':>9} {'open':>5} {'capital':>12} {'equity':>12} {'return %':>9}  first → last"
        )
        for row in summary:
            marker = " (current)" if row["epoch"] == current else ""
            self.stdout.write(
                f"{row['epoch'] + marker:<32} {row['positions']:>9} {row['open']:>5} "
                f"{fmt(row['starting_capital']):>12} {fmt(row['equity']):>12} {fmt(row['return_pct']):>9}  "
                f"{row['first']:%Y-%m-%d} → {row['last']:%Y-%m-%d}"
            )
        if not any(row["epoch"] == current for row in summary):
            figures = epoch_equity(current)
            self.stdout.write(
                f"{current + ' (current)':<32} {0:>9} {0:>5} {fmt(figures['starting_capital']):>12} "
                f"{fmt(figures['equity']):>12} {fmt(figures['return_pct']):>9}"
            )
