from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from oms.exits import POLICIES
from oms.models import Position
from oms.services.exit_report import ReplayOutcome, exit_engine_summary, exit_replay, exit_replay_walk
from pricing.quotes import PriceMode
from pricing.sources import get_price_source


def _num(value) -> str:
    return "-" if value is None else f"{value.normalize():f}" if hasattr(value, "normalize") else str(value)


class Command(BaseCommand):
    help = (
        "Summarise positions by status, close reason and exit strategy. With --replay, show what each "
        "open position's exit policy would do now, without changing anything: at the live quote (default), "
        "at a recorded quote (--quotes FILE [--at TIME], or --walk through the whole file), or in the "
        "--hit-tp / --hit-sl scenarios (the price at the position's take profit / stop in force)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--replay", action="store_true", help="evaluate the open positions' exit policies")
        scenario = parser.add_mutually_exclusive_group()
        scenario.add_argument("--hit-tp", action="store_true", help="replay at each position's take profit")
        scenario.add_argument("--hit-sl", action="store_true", help="replay at each position's stop in force")
        scenario.add_argument("--quotes", metavar="FILE", help="recorded quotes (CSV/JSONL file)")
        parser.add_argument("--at", help="with --quotes: replay at this time (ISO 8601; default: the last recorded)")
        parser.add_argument("--walk", action="store_true", help="with --quotes: step through every recorded time")
        parser.add_argument("--policy", choices=sorted(POLICIES), help="use this policy for every position")
        parser.add_argument("--symbol", action="append", default=[], help="only this symbol (repeatable)")
        parser.add_argument("--limit", type=int, default=200, help="at most this many open positions (default 200)")

    def handle(self, *args, replay, hit_tp, hit_sl, quotes, at, walk, policy, symbol, limit, **options) -> None:
        if (hit_tp or hit_sl or quotes or policy or symbol) and not replay:
            raise CommandError("--hit-tp, --hit-sl, --quotes, --policy and --symbol need --replay")
        if (at or walk) and not quotes:
            raise CommandError("--at and --walk need --quotes FILE")
        if at and walk:
            raise CommandError("--at and --walk exclude each other")
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        self._summary()
        if replay:
            self._replay(
                hit_tp=hit_tp,
                hit_sl=hit_sl,
                quotes=quotes,
                at=at,
                walk=walk,
                policy=policy,
                symbols=[s.upper() for s in symbol],
                limit=limit,
            )

    def _summary(self) -> None:
        summary = exit_engine_summary()
        self.stdout.write("Positions by status")
        for row in summary["by_status"] or [{"status": "(none)", "count": 0}]:
            self.stdout.write(f"  {row['status']:<12} {row['count']:>8}")
        self.stdout.write("Closed positions by reason")
        for row in summary["by_reason"]:
            self.stdout.write(f"  {row['auto_close_reason'] or '(none)':<12} {row['count']:>8}  pnl {_num(row['pnl'])}")
        self.stdout.write("By exit strategy")
        for row in summary["by_strategy"]:
            self.stdout.write(
                f"  {row['exit_strategy']:<18} open {row['open']:>6}  closed {row['closed']:>6}  pnl {_num(row['pnl'])}"
            )

    def _replay(self, *, hit_tp, hit_sl, quotes, at, walk, policy, symbols, limit) -> None:
        positions = Position.objects.open().order_by("id")
        if symbols:
            positions = positions.filter(symbol__in=symbols)
        positions = list(positions[:limit])
        if hit_tp or hit_sl:
            label = "take profit hit" if hit_tp else "stop loss hit"
            outcomes = exit_replay(positions, scenario="hit_tp" if hit_tp else "hit_sl", policy=policy)
        elif quotes:
            source = self._replay_source(quotes, at)
            label = f"recorded quotes {quotes}" + (" (walk)" if walk else f" at {source.now.isoformat()}")
            outcomes = (
                exit_replay_walk(positions, source=source, policy=policy)
                if walk
                else exit_replay(positions, source=source, policy=policy, now=source.now)
            )
        else:
            label = f"live quote ({settings.PRICE_SOURCE}, {settings.PRICE_MODE})"
            outcomes = exit_replay(positions, source=get_price_source(), policy=policy)
        self.stdout.write(f"Replay: {label}, {len(positions)} open position(s)")
        for outcome in outcomes:
            self.stdout.write("  " + self._line(outcome))
        closes = sum(o.action == "close" for o in outcomes)
        self.stdout.write(f"Would close {closes} of {len(outcomes)}.")

    def _replay_source(self, path: str, at: str | None):
        from pricing.sources.replay import ReplayFileError, ReplaySource, parse_ts

        try:
            source = ReplaySource(path, mode=PriceMode(settings.PRICE_MODE))
        except (OSError, ReplayFileError) as exc:
            raise CommandError(str(exc)) from None
        try:
            when: datetime = parse_ts(at) if at else source.end
        except ValueError as exc:
            raise CommandError(f"--at: {exc}") from None
        source.set_now(when)
        return source

    @staticmethod
    def _line(o: ReplayOutcome) -> str:
        p = o.position
        head = (
            f"#{p.pk} {p.symbol} {p.side} entry {_num(p.entry_price)} tp {_num(p.tp_price)} "
            f"sl {_num(p.sl_price)} [{o.policy}]"
        )
        if o.action == "no_price":
            return f"{head}: no price ({o.note})"
        at = f" at {o.at:%Y-%m-%d %H:%M:%S}" if o.at else ""
        if o.action == "close":
            return f"{head}: CLOSE {o.reason} @ {_num(o.close_price)} pnl {_num(o.pnl)}{at}"
        if o.action == "partial":
            return f"{head}: PARTIAL EXIT {o.reason} @ {_num(o.close_price)} realised {_num(o.pnl)}{at}"
        levels = f"stop {_num(o.dynamic_sl_price)}, best move {_num(o.max_favorable_move)} %"
        return f"{head}: {'update' if o.action == 'update' else 'hold'} at {_num(o.price)} ({levels})"
