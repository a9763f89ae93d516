from django.core.management.base import BaseCommand, CommandError

from oms.services.execution import preflight


class Command(BaseCommand):
    help = (
        "Read-only checks before trading on an exchange (BROKER_MODE=demo/live): the keys work, no withdraw "
        "permission, account equity within LIVE_MAX_ACCOUNT_USDT, one-way mode, margin mode and leverage "
        "of every SYMBOL_ALLOWLIST symbol, no unknown position or order. Exit 0 when all pass."
    )

    def handle(self, *args, **options):
        checks = preflight()
        width = max(len(c.name) for c in checks)
        for check in checks:
            mark = self.style.SUCCESS("PASS") if check.ok else self.style.ERROR("FAIL")
            self.stdout.write(f"{mark}  {check.name.ljust(width)}  {check.detail}")
        failed = [c.name for c in checks if not c.ok]
        if failed:
            raise CommandError(f"preflight failed: {', '.join(failed)}")
