import json

from django.core.management.base import BaseCommand

from oms.management.commands._cli import WHEN_HELP, NumbersJSONEncoder, fmt, parse_when, table
from oms.selectors import GROUP_FIELDS, book_stats, stats_with_equity

SUMMARY = [
    ("total_positions", "positions"),
    ("open_positions", "open"),
    ("closed_positions", "closed"),
    ("winning_trades", "wins"),
    ("losing_trades", "losses"),
    ("winrate", "winrate %"),
    ("tp_count", "TP"),
    ("sl_count", "SL"),
    ("total_pnl", "net PnL"),
    ("total_fees", "fees"),
    ("profit_factor", "profit factor"),
    ("expectancy", "expectancy"),
    ("max_drawdown", "max drawdown"),
    ("trades_per_day", "trades/day"),
]
GROUP_COLUMNS = [
    ("closed_positions", "closed"),
    ("open_positions", "open"),
    ("winrate", "win %"),
    ("tp_count", "TP"),
    ("sl_count", "SL"),
    ("total_pnl", "net PnL"),
    ("profit_factor", "PF"),
    ("max_drawdown", "max DD"),
]


class Command(BaseCommand):
    help = (
        "Print the trading statistics (the same figures as GET /stats): positions, winrate, TP/SL, net PnL, "
        "profit factor, drawdown, and the equity and return of the epoch (--epoch, else the current one). "
        "Filter by the positions' opening time and by epoch; --by gives one line per symbol, strategy, "
        "exchange or closing day. --json prints machine-readable output."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", help=f"positions opened at or after this {WHEN_HELP}")
        parser.add_argument("--until", help=f"positions opened before this {WHEN_HELP}")
        parser.add_argument("--by", choices=list(GROUP_FIELDS), help="one line per group")
        parser.add_argument("--epoch", help="only this paper epoch (account_label); default: all epochs")
        parser.add_argument("--symbol", help="only this symbol")
        parser.add_argument("--strategy", help="only this strategy")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args, since, until, by, epoch, symbol, strategy, json: bool, **options):
        filters = {
            "since": parse_when(since, "--since"),
            "until": parse_when(until, "--until"),
            "account_label": epoch,
            "symbol": symbol,
            "strategy": strategy,
        }
        if by:
            result = {"group_by": by, "groups": book_stats(filters, by)}
        else:
            result = stats_with_equity(filters)
        if json:
            self.stdout.write(_json_dumps(result))
            return
        scope = f"epoch {epoch}" if epoch else "all epochs"
        self.stdout.write(f"LOMS stats ({scope}; opened {since or 'any time'} → {until or 'now'})")
        if by:
            for line in table(result["groups"], [(by, by)] + GROUP_COLUMNS):
                self.stdout.write(line)
        else:
            width = max(len(label) for _, label in SUMMARY)
            for key, label in SUMMARY:
                self.stdout.write(f"  {label:<{width}}  {fmt(result.get(key))}")
            self.stdout.write(
                f"Equity of epoch {result['epoch']}: {fmt(result['equity'])} USDT, "
                f"return {fmt(result['return_pct'])} % on a starting capital of {fmt(result['starting_capital'])}"
            )


def _json_dumps(value) -> str:
    return json.dumps(value, cls=NumbersJSONEncoder, indent=2)
