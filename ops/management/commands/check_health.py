import json
import os

from django.core.management.base import BaseCommand
from django.core.serializers.json import DjangoJSONEncoder

from oms.services.health import health_report
from ops.remote import UNREACHABLE, health_exit_code, health_fetch


class Command(BaseCommand):
    help = (
        "Print the service health: environment, broker mode, OMS switch, database, audit log, price "
        "source and mode, auto-close status. Without --url it reads this machine's configuration and "
        "database; with --url it asks a running server (GET URL/health). "
        "Every reason for a degraded state is listed (switch off, auto-close stale or failing, open "
        "symbols without a quote, audit log not writable, backup too old). Without a token a server "
        "only gives the state and the reasons; --token (or $LOMS_API_TOKEN) gets the details. "
        "Exit code 0 healthy, 1 degraded, 2 unreachable or error."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", help="base URL of a running LOMS, e.g. https://loms.example.org")
        parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the server (default 5)")
        parser.add_argument(
            "--token", default=None, help="API token for the details with --url (default $LOMS_API_TOKEN)"
        )
        parser.add_argument("--json", action="store_true", help="print the raw health report as JSON")

    def handle(self, *args, url, timeout, json: bool, token=None, **options):
        if url:
            token = token if token is not None else os.environ.get("LOMS_API_TOKEN", "")
            report, error = health_fetch(url, timeout=timeout, token=token)
        else:
            report, error = health_report(), ""
        code = health_exit_code(report)
        if json:
            self.stdout.write(_dumps(report if report else {"status": "unreachable", "error": error}))
        elif report is None:
            self.stdout.write(self.style.ERROR(f"LOMS health: UNREACHABLE — {error}"))
        else:
            self._print(report, source=url or "local configuration and database", code=code)
        if code:
            raise SystemExit(code)

    def _print(self, report: dict, *, source: str, code: int) -> None:
        word = {0: self.style.SUCCESS("OK"), 1: self.style.WARNING("DEGRADED")}.get(code, self.style.ERROR("ERROR"))
        write = self.stdout.write
        write(f"LOMS health: {word}  ({source})")
        for reason in report.get("reasons") or []:
            detail = f" — {reason['detail']}" if reason.get("detail") else ""
            write(self.style.WARNING(f"  ! {reason.get('code')}: {reason.get('message')}") + detail)
        write(f"  environment   {report.get('environment')}")
        write(f"  broker mode   {report.get('broker_mode')}")
        switch = report.get("oms_switch") or {}
        state = "ON" if report.get("oms_enabled") else "OFF"
        if switch.get("forced_off_by_env"):
            state += " (forced off by OMS_ENABLED=false)"
        detail = (
            f" — by {switch.get('changed_by') or '-'} at {switch.get('changed_at') or '-'}: "
            f"{switch.get('reason') or '-'}"
            if switch
            else ""
        )
        write(f"  OMS switch    {state}{detail}")
        url = f"  ({report['database_url']})" if report.get("database_url") else ""
        write(f"  database      {report.get('database')}{url}")
        if "audit_log_path" in report:
            write(f"  audit log     {report.get('audit_log_path')}")
        if "price_source" in report:
            write(
                f"  prices        source {report.get('price_source')}, mode {report.get('price_mode')}, "
                f"exchange {report.get('price_exchange')}"
            )
        auto = report.get("auto_close")
        if auto:
            age = auto.get("last_sweep_age_sec")
            sweep = f"last sweep {age:.1f} s ago" if age is not None else "no sweep yet"
            stale = self.style.WARNING(" STALE") if auto.get("stale") else ""
            write(
                f"  auto-close    {sweep}{stale} (every {auto.get('interval_sec')} s), {auto.get('sweeps')} sweeps, "
                f"{auto.get('positions_closed')} closed, {auto.get('errors')} errors"
            )
            if auto.get("last_error"):
                write(f"                last error at {auto.get('last_error_at')}: {auto.get('last_error')}")
            failures = auto.get("quote_failures") or {}
            if failures:
                write(f"                failing quotes: {', '.join(sorted(failures))}")
        reconciliation = report.get("reconciliation")  # demo/live (issue #11)
        if reconciliation:
            age = reconciliation.get("last_run_age_sec")
            when = f"last run {age:.0f} s ago" if age is not None else "never run"
            write(
                f"  exchange      {report.get('broker_exchange')}: reconciliation {reconciliation.get('state')}, "
                f"{when}{' ' + reconciliation['detail'] if reconciliation.get('detail') else ''}"
            )
        if code == UNREACHABLE and report.get("status") == "error":
            write(self.style.ERROR("  The service reports an error (see database above)."))


def _dumps(value) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, indent=2)
