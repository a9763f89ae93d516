from django.core.management.base import BaseCommand, CommandError

from oms.models import CloseReason, Position
from oms.services.operator_audit import Operator
from oms.services.positions import positions_close_all


class Command(BaseCommand):
    help = (
        "PANIC: close every open position at the current market price (reason panic), the same as the "
        "console's Close all button. Refuses without --yes (then it only counts the open positions). "
        "Turn the switch off first (manage.py oms_switch off --reason ...) so no new position opens. "
        "Positions whose symbol has no usable price stay open and are listed. "
        "Exit code 0 when nothing is left open, 1 otherwise."
    )

    def add_arguments(self, parser):
        parser.add_argument("--yes", action="store_true", help="really close them all")
        parser.add_argument("--actor", default=None, help="who is closing (default: the OS user)")
        parser.add_argument("--reason", default="", help="why (recorded in the operator audit)")

    def handle(self, *args, yes, actor=None, reason="", **options):
        open_count = Position.objects.open().count()
        if not yes:
            raise CommandError(
                f"{open_count} open position(s). Nothing was closed: run again with --yes to close them all at market."
            )
        if not open_count:
            self.stdout.write(self.style.SUCCESS("No open positions."))
            return
        result = positions_close_all(reason=CloseReason.PANIC, operator=Operator.command(actor, reason))
        for position in result.closed:
            self.stdout.write(
                f"closed #{position.pk} {position.side} {position.qty} {position.symbol} "
                f"@ {position.close_price}  PnL {position.pnl}"
            )
        for symbol, why in sorted(result.failed.items()):
            self.stdout.write(self.style.ERROR(f"NOT closed: {symbol}: {why}"))
        for position_id, why in sorted(result.failed_positions.items()):
            self.stdout.write(self.style.ERROR(f"NOT closed: #{position_id}: {why}"))
        still_open = Position.objects.open().count()
        summary = f"Closed {len(result.closed)}; {still_open} still open."
        if still_open:
            self.stdout.write(self.style.ERROR(summary + " Retry, or close them from the console when prices return."))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS(summary))
