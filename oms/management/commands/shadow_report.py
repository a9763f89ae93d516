import json
from datetime import timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.template.loader import render_to_string
from django.utils import timezone

from oms.management.commands._cli import WHEN_HELP, NumbersJSONEncoder, fmt, parse_when, table
from oms.services.epochs import epoch_current
from oms.services.shadow import equity_svg, shadow_report

FIGURES = [
    ("closed_trades", "closed trades"),
    ("wins", "wins"),
    ("losses", "losses"),
    ("winrate_pct", "winrate %"),
    ("winrate_ci95_low_pct", "winrate 95% CI low %"),
    ("winrate_ci95_high_pct", "winrate 95% CI high %"),
    ("tp_count", "exits at TP"),
    ("sl_count", "exits at SL"),
    ("other_exit_count", "other exits"),
    ("tp_pct", "TP %"),
    ("sl_pct", "SL %"),
    ("other_exit_pct", "other %"),
    ("total_pnl", "net PnL (USDT)"),
    ("gross_win", "gross win"),
    ("gross_loss", "gross loss"),
    ("profit_factor", "profit factor"),
    ("expectancy", "expectancy per trade"),
    ("avg_win", "average win"),
    ("avg_loss", "average loss"),
    ("max_drawdown", "max drawdown (USDT)"),
    ("max_drawdown_pct_of_peak", "max drawdown % of peak"),
    ("longest_losing_streak", "longest losing streak"),
    ("period_days", "period (days)"),
    ("trades_per_day", "trades per day"),
]
GROUP_COLUMNS = [
    ("closed_trades", "trades"),
    ("winrate_pct", "win %"),
    ("tp_count", "TP"),
    ("sl_count", "SL"),
    ("other_exit_count", "other"),
    ("total_pnl", "net PnL"),
    ("profit_factor", "PF"),
    ("expectancy", "expect."),
    ("max_drawdown", "max DD"),
]


MAX_DAYS = 36_500  # a century: more is a typo, and past the calendar's range


class Command(BaseCommand):
    help = (
        "Shadow-mode GO / NO-GO report over the trades closed in a period: winrate with its 95% Wilson "
        "interval, TP vs SL vs other exits, max drawdown, trades per day, profit factor, expectancy, "
        "longest losing streak, per strategy and per symbol. GO needs: at least SHADOW_MIN_TRADES trades; "
        "the LOWER bound of the winrate interval >= SHADOW_MIN_WINRATE_PCT; max drawdown <= "
        "SHADOW_MAX_DRAWDOWN_USDT; no open position older than SHADOW_MAX_OPEN_AGE_HOURS; no auto-close "
        "error in the period. Each failed criterion is named. Uses the current epoch unless --epoch. "
        "Exit code 0 GO, 1 NO-GO."
    )

    def add_arguments(self, parser):
        period = parser.add_mutually_exclusive_group()
        period.add_argument("--days", type=int, help="the last N days (default: everything)")
        period.add_argument("--since", help=f"trades closed at or after this {WHEN_HELP}")
        parser.add_argument("--until", help=f"trades closed before this {WHEN_HELP} (default now)")
        parser.add_argument(
            "--epoch", help="paper epoch (account_label) to judge; 'all' for every epoch (default: the current epoch)"
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--html", metavar="FILE", help="also write an HTML report with the equity curve")

    def handle(self, *args, days, since, until, epoch, json: bool, html, **options):
        now = timezone.now()
        if days is not None and not 1 <= days <= MAX_DAYS:
            raise CommandError(f"--days must be between 1 and {MAX_DAYS}")
        start = now - timedelta(days=days) if days else parse_when(since, "--since")
        end = parse_when(until, "--until")
        if start and end and end <= start:
            raise CommandError("--until must be after the start of the period")
        chosen = None if epoch == "all" else (epoch or epoch_current())
        report = shadow_report(since=start, until=end, epoch=chosen, now=now)
        if html:
            self._write_html(Path(html), report)
        if json:
            self.stdout.write(_dumps(report))
        else:
            self._print(report)
            if html:
                self.stdout.write(f"HTML report written to {html}")
        if report["verdict"] != "GO":
            raise SystemExit(1)

    def _print(self, report: dict) -> None:
        write = self.stdout.write
        write(f"LOMS shadow-mode report — {report['environment']}, epoch {report['epoch']}")
        write(
            f"Trades closed {fmt(report['since']) if report['since'] else 'from the start'} → "
            f"{fmt(report['until'])} UTC"
        )
        metrics = report["metrics"]
        width = max(len(label) for _, label in FIGURES)
        for key, label in FIGURES:
            write(f"  {label:<{width}}  {fmt(metrics.get(key))}")
        if report["equity"]:
            equity = report["equity"]
            write(
                f"Equity of epoch {equity['epoch']} now: {fmt(equity['equity'])} USDT, return "
                f"{fmt(equity['return_pct'])} % on a starting capital of {fmt(equity['starting_capital'])}"
            )
        for title, rows, key in (
            ("Per strategy", report["by_strategy"], "strategy"),
            ("Per symbol", report["by_symbol"], "symbol"),
        ):
            write(f"\n{title}")
            for line in table(rows, [(key, key)] + GROUP_COLUMNS) if rows else ["no closed trades"]:
                write(f"  {line}")
        write("\nCriteria")
        for criterion in report["criteria"]:
            mark = self.style.SUCCESS("pass") if criterion["ok"] else self.style.ERROR("FAIL")
            write(f"  [{mark}] {criterion['name']}: {criterion['detail']}")
        if report["verdict"] == "GO":
            write(self.style.SUCCESS("\nVERDICT: GO"))
        else:
            write(self.style.ERROR(f"\nVERDICT: NO-GO (failed: {', '.join(report['failed'])})"))

    def _write_html(self, path: Path, report: dict) -> None:
        metrics = report["metrics"]
        groups = [
            (title, [{"name": row[key], **row} for row in rows], key)
            for title, rows, key in (
                ("Per strategy", report["by_strategy"], "strategy"),
                ("Per symbol", report["by_symbol"], "symbol"),
            )
        ]
        body = render_to_string(
            "oms/shadow_report.html",
            {
                "report": report,
                "svg": equity_svg(report["equity_curve"]),
                "figures": [(label, fmt(metrics.get(key))) for key, label in FIGURES],
                "equity": {key: fmt(value) for key, value in (report["equity"] or {}).items()},
                "groups": groups,
            },
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")


def _dumps(report: dict) -> str:
    return json.dumps(report, cls=NumbersJSONEncoder, indent=2)
