"""Auto-close sweep cost: N open positions over M symbols, one sweep where nothing triggers and
one where every position closes. Prints milliseconds, queries and quote requests (exactly one
`get_quotes` call per sweep, never one per position or symbol).

    .venv/bin/python bench/bench_sweep.py                       # temporary SQLite file, migrated
    .venv/bin/python bench/bench_sweep.py --database-url postgres://postgres@127.0.0.1:5432/loms_bench

Targets with 10 000 positions over 100 symbols: no trigger <= 150 ms, all closing <= 2 s.
`measure_sweep()` is also used by bench/run.py (W2) inside its own Django setup.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_NO_TRIGGER_MS = 150.0
TARGET_CLOSE_ALL_MS = 2000.0
BENCH_ACCOUNT = "bench-sweep"


class CountingSource:
    """Fixed quotes for every symbol; counts how the sweep asks for them."""

    name = "bench"

    def __init__(self, price: Decimal) -> None:
        self.price = price
        self.batches = 0
        self.single = 0
        self.symbols = 0

    def get_quotes(self, symbols):
        from django.utils import timezone

        from pricing.quotes import PriceQuote

        wanted = list(dict.fromkeys(symbols))
        self.batches += 1
        self.symbols = max(self.symbols, len(wanted))
        now = timezone.now()
        return {
            s: PriceQuote(
                symbol=s, ts=now, bid=self.price, ask=self.price, last=self.price, mark=self.price, source=self.name
            )
            for s in wanted
        }

    def get_quote(self, symbol):
        self.single += 1
        return self.get_quotes([symbol])[symbol]


def _reset_book() -> None:
    """Bench databases only: earlier bench positions go, any other open position is closed."""
    from django.db.models import F
    from django.utils import timezone

    from oms.models import Order, Position, PositionStatus

    Order.objects.filter(position__account_label=BENCH_ACCOUNT).delete()
    Position.objects.filter(account_label=BENCH_ACCOUNT).delete()
    Position.objects.open().update(
        status=PositionStatus.CLOSED,
        closed_at=timezone.now(),
        close_price=F("entry_price"),
        pnl=Decimal("0"),
        auto_close_reason="manual",
    )


def _seed(count: int, symbols: int) -> None:
    """Half long, half short, entry 100, TP/SL 4.5 %/1.5 %, an hour old: 100 triggers nothing,
    110 closes every one (longs at TP, shorts at SL)."""
    from datetime import timedelta

    from django.utils import timezone

    from oms.models import Position

    created = timezone.now() - timedelta(hours=1)
    rows = []
    for i in range(count):
        long = i % 2 == 0
        rows.append(
            Position(
                exchange="bench",
                symbol=f"B{i % symbols:03d}USDT",
                side="long" if long else "short",
                qty=Decimal("1"),
                account_label=BENCH_ACCOUNT,
                entry_price=Decimal("100"),
                tp_price=Decimal("104.5" if long else "95.5"),
                sl_price=Decimal("98.5" if long else "101.5"),
                created_at=created,
            )
        )
    Position.objects.bulk_create(rows, batch_size=2000)


def _timed_sweep(source: CountingSource) -> dict:
    from django.db import connection

    from oms.services.sweep import auto_close_sweep

    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        began = time.perf_counter()
        outcome = auto_close_sweep(source=source)
        elapsed = (time.perf_counter() - began) * 1000
    if outcome.error:
        raise SystemExit(f"the sweep failed: {outcome.error}")
    return {
        "ms": round(elapsed, 1),
        "checked": outcome.checked,
        "closed": len(outcome.closed),
        "quote_batches": source.batches,
        "single_quotes": source.single,
        "symbols_per_batch": source.symbols,
        "queries": len(queries),
    }


def measure_sweep(*, open_positions: int = 10_000, symbols: int = 100, repeats: int = 3) -> dict:
    """{"no_trigger": figures, "close_all": figures}; no_trigger is the median of `repeats` sweeps."""
    figures = {}
    _reset_book()
    _seed(open_positions, symbols)
    runs = [_timed_sweep(CountingSource(Decimal("100"))) for _ in range(repeats)]
    figures["no_trigger"] = {
        **runs[0],
        "ms": statistics.median(r["ms"] for r in runs),
        "ms_runs": [r["ms"] for r in runs],
    }
    figures["close_all"] = _timed_sweep(CountingSource(Decimal("110")))
    _reset_book()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=10_000)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--database-url", help="default: a temporary SQLite file (created and migrated)")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="loms-bench-sweep-")
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{Path(tmp.name) / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lomsite.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import logging

    from django.core.management import call_command

    for handler in logging.getLogger().handlers:  # 10 000 position_closed lines: formatted, not printed
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
    call_command("migrate", verbosity=0)
    print(
        f"sweep bench: {args.positions} open positions over {args.symbols} symbols, "
        f"database {os.environ['DATABASE_URL'].split('@')[-1]}"
    )
    figures = measure_sweep(open_positions=args.positions, symbols=args.symbols)
    ok = True
    for label, target in (("no_trigger", TARGET_NO_TRIGGER_MS), ("close_all", TARGET_CLOSE_ALL_MS)):
        fig = figures[label]
        met = fig["ms"] <= target
        ok &= met
        print(
            f"  {label:<11} {fig['ms']:8.1f} ms (target <= {target:g} ms: {'met' if met else 'MISSED'})  "
            f"checked={fig['checked']} closed={fig['closed']} queries={fig['queries']} "
            f"get_quotes calls={fig['quote_batches']} get_quote calls={fig['single_quotes']} "
            f"symbols={fig['symbols_per_batch']}"
        )
        assert fig["quote_batches"] == 1 and fig["single_quotes"] == 0, "one get_quotes call per sweep"
    assert figures["no_trigger"]["closed"] == 0 and figures["close_all"]["closed"] == args.positions
    tmp.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
