from django.core.management.base import BaseCommand, CommandError

from oms.services.execution import flatten
from oms.services.operator_audit import command_actor


class Command(BaseCommand):
    help = (
        "Everything off: turn the OMS switch off, cancel every open order on the exchange, close every "
        "position reduce-only, then read the exchange back. Exit 0 only when the exchange confirms flat "
        "(docs/LIVE.md, docs/RUNBOOK.md). In paper mode: switch off and close all at market."
    )

    def add_arguments(self, parser):
        parser.add_argument("--yes", action="store_true", help="required: confirms closing everything now")
        parser.add_argument("--reason", default="manage.py flatten", help="recorded with the switch change")

    def handle(self, *args, yes, reason, **options):
        if not yes:
            raise CommandError("flatten closes every position at market: run it again with --yes")
        result = flatten(actor=command_actor(), reason=reason)
        self.stdout.write(f"closed {len(result.closed)} position(s) in {result.seconds:.1f} s")
        for what, why in result.failed.items():
            self.stderr.write(f"FAILED {what}: {why}")
        for held in result.remaining_positions:
            self.stderr.write(f"STILL OPEN on the exchange: {held}")
        for row in result.remaining_in_loms:
            self.stderr.write(f"STILL OPEN in LOMS: {row}")
        if result.remaining_orders:
            self.stderr.write(f"STILL {result.remaining_orders} open order(s) on the exchange")
        if not result.flat:
            raise CommandError("NOT FLAT: check the exchange's app now (docs/LIVE.md, rollback)")
        self.stdout.write(self.style.SUCCESS(f"FLAT: no open position and no open order ({result.checked})"))
