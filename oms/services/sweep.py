"""The auto-close sweep: every open position checked against its exit policy at the current price."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.exits import ExitContext, ExitParams, close_action, evaluate_exit, level_update, partial_close_action
from oms.models import AutoCloseMonitor, ExitStrategy, Position, SweepRun
from oms.services.closing import CHUNK, CloseInstruction, close_positions
from pricing.quotes import PriceMode
from pricing.sources import fetch_prices, get_price_source
from pricing.sources.base import PriceSource

logger = logging.getLogger("loms.oms.auto_close")

SWEEP_LOG_KEEP = timedelta(hours=6)
LEVEL_FIELDS = ["dynamic_tp_price", "dynamic_sl_price", "max_favorable_move", "exit_meta"]
EVAL_FIELDS = (
    "id",
    "symbol",
    "side",
    "entry_price",
    "tp_price",
    "sl_price",
    "exit_strategy",
    "created_at",
    "exit_meta",
)


class LeaseLost(Exception):
    """The sweep's lease expired or passed to someone else: this sweep must not write anything."""


@dataclass(slots=True)
class _Candidate:
    """The values an exit policy reads, loaded without building full model instances (fast)."""

    id: int
    symbol: str
    side: str
    entry_price: Decimal
    tp_price: Decimal | None
    sl_price: Decimal | None
    exit_strategy: str
    created_at: datetime | None = None  # loaded only when a policy can read it (timeouts, trailing)
    exit_meta: dict = field(default_factory=dict)


@dataclass
class SweepResult:
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: float = 0.0
    checked: int = 0
    closed: list[Position] = field(default_factory=list)
    partially_closed: list[Position] = field(default_factory=list)  # tp_scale_out's first take profits
    levels_updated: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # symbol → why it had no usable price
    failed_positions: dict[int, str] = field(default_factory=dict)  # id → why its exit could not be done
    quote_requests: int = 0  # get_quotes calls (one per sweep at most)
    error: str = ""


def _lock_monitor(lease_owner: str | None) -> AutoCloseMonitor:
    """Lock the monitor row for this transaction; with a lease, check and renew it (the fence)."""
    monitor = AutoCloseMonitor.objects.select_for_update().get(pk=1)
    if lease_owner is not None:
        now = timezone.now()
        if monitor.lease_owner != lease_owner or not monitor.lease_expires_at or monitor.lease_expires_at <= now:
            raise LeaseLost(f"lease held by {monitor.lease_owner or 'nobody'}")
        term = settings.AUTO_CLOSE_LEASE_SEC + settings.AUTO_CLOSE_INTERVAL_SEC  # as auto_close.lease_term_sec()
        monitor.lease_expires_at = now + timedelta(seconds=term)
    return monitor


def _current_close_failures(known: dict, failed: dict[int, str], now: datetime) -> dict:
    """The positions whose exit failed in this sweep, with how long they have been failing
    (a position that closed, or whose exit worked this time, drops out)."""
    current = {}
    for position_id, reason in failed.items():
        entry = (known or {}).get(str(position_id)) or {}
        current[str(position_id)] = {
            "count": int(entry.get("count", 0)) + 1,
            "last_error": reason[:500],
            "since": entry.get("since", now.isoformat()),
            "last_at": now.isoformat(),
        }
    return current


def _merge_failures(
    known: dict, failed: dict[str, str], now: datetime, previously_failed: frozenset[str] | set[str] = frozenset()
) -> dict:
    """`failing_since`: start of the symbol's current run of failed sweeps (read by /health)."""
    merged = dict(known or {})
    for symbol, reason in failed.items():
        entry = merged.get(symbol) or {}
        count = int(entry.get("count", 0)) + 1
        since = entry.get("failing_since") if symbol in previously_failed else None
        merged[symbol] = {
            "count": count,
            "last_error": reason[:500],
            "last_at": now.isoformat(),
            "failing_since": since or now.isoformat(),
        }
    return merged


def auto_close_sweep(
    *, now: datetime | None = None, source: PriceSource | None = None, lease_owner: str | None = None
) -> SweepResult:
    """One sweep: open positions older than MIN_POSITION_AGE_SEC, one `get_quotes` call for their
    symbols, each position's exit policy, closes and level updates in one transaction.

    A symbol without a usable quote keeps its positions open. Any other failure is recorded in
    the monitor and returned in `error`; only `LeaseLost` is raised (nothing was written then).
    """
    started = time.perf_counter()
    result = SweepResult(started_at=timezone.now())
    now = now or result.started_at
    try:
        _sweep(result, now=now, source=source, lease_owner=lease_owner, started=started)
    except LeaseLost:
        raise
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        result.closed = []
        logger.exception("auto-close sweep failed")
        _record_error(result, lease_owner=lease_owner, started=started)
        return result
    if result.failed:
        log_event(logger, "auto_close_quote_failures", logging.WARNING, failures=result.failed)
    if result.failed_positions:
        log_event(logger, "auto_close_position_failures", logging.ERROR, failures=result.failed_positions)
    return result


def _sweep(
    result: SweepResult, *, now: datetime, source: PriceSource | None, lease_owner: str | None, started: float
) -> list[Position]:
    mode = PriceMode(settings.PRICE_MODE)
    params = ExitParams.from_settings()
    cutoff = now - timedelta(seconds=settings.MIN_POSITION_AGE_SEC)
    candidates = _load_candidates(cutoff, with_created_at=params.max_holding_min is not None)
    result.checked = len(candidates)
    symbols = list(dict.fromkeys(c.symbol for c in candidates))
    prices: dict = {}
    if symbols:
        result.quote_requests += 1
        prices, result.failed = fetch_prices(source or get_price_source(), symbols, mode)

    closes: list[CloseInstruction] = []
    updates: list[Position] = []
    for candidate in candidates:
        priced = prices.get(candidate.symbol)
        if priced is None:
            continue  # a bad quote never closes a position
        price, quote = priced
        context = ExitContext(price=price, quote=quote, now=now)
        try:
            actions = evaluate_exit(candidate, candidate.exit_strategy, context, params)
        except Exception as exc:  # one row's bad values (an entry of 0, say) never stop the others
            result.failed_positions[candidate.id] = f"exit policy failed: {type(exc).__name__}: {exc}"[:500]
            continue
        if not actions:
            continue
        levels, close, partial = level_update(actions), close_action(actions), partial_close_action(actions)
        level_fields = levels.level_fields if levels else None
        if close is not None:
            closes.append(CloseInstruction(candidate.id, price, close.reason, level_fields))
        elif partial is not None:  # tp_scale_out's first take profit, with its stop moved to break-even
            closes.append(
                CloseInstruction(candidate.id, price, partial.reason, level_fields, fraction=partial.fraction)
            )
        elif levels is not None:
            updates.append(Position(id=candidate.id, **levels.level_fields))

    # BROKER (#11): exchange positions leave the paper batch close (in paper mode: skipped, reported).
    from oms.services.execution import sweep_exchange_positions

    closes, updates = sweep_exchange_positions(closes, updates)
    AutoCloseMonitor.load()
    with transaction.atomic():
        monitor = _lock_monitor(lease_owner)
        outcome = close_positions(closes, now=now)
        result.closed, result.partially_closed = outcome.closed, outcome.partially_closed
        result.failed_positions.update(outcome.failed)
        result.levels_updated = _update_levels(updates, result)
        _record_sweep(monitor, result, lease_owner=lease_owner, started=started)


def _update_levels(updates: list[Position], result: SweepResult) -> int:
    """Write the moved exit levels (skipping positions closed meanwhile, by a manual close, say);
    a batch the database refuses is retried row by row so only the row at fault is skipped."""
    still_open = Position.objects.open()
    written = 0
    for start in range(0, len(updates), CHUNK):
        batch = updates[start : start + CHUNK]
        try:
            with transaction.atomic():
                still_open.bulk_update(batch, LEVEL_FIELDS)
            written += len(batch)
        except DatabaseError:
            for position in batch:
                try:
                    with transaction.atomic():
                        still_open.bulk_update([position], LEVEL_FIELDS)
                    written += 1
                except DatabaseError as exc:
                    result.failed_positions[position.pk] = f"exit levels refused: {exc}"[:500]
    return written


def _load_candidates(cutoff: datetime, *, with_created_at: bool) -> list[_Candidate]:
    """Open positions old enough to check. Static ones without the columns they do not need:
    converting 10 000 JSON and datetime values is most of a quiet sweep's cost."""
    ripe = Position.objects.open().filter(created_at__lte=cutoff).order_by()
    with_meta = [ExitStrategy.TP_SL_TRAILING_V1, ExitStrategy.TP_SCALE_OUT]
    static_fields = EVAL_FIELDS[:8] if with_created_at else EVAL_FIELDS[:7]
    candidates = [_Candidate(*row) for row in ripe.exclude(exit_strategy__in=with_meta).values_list(*static_fields)]
    candidates += [_Candidate(*row) for row in ripe.filter(exit_strategy__in=with_meta).values_list(*EVAL_FIELDS)]
    return candidates


def _record_sweep(monitor: AutoCloseMonitor, result: SweepResult, *, lease_owner: str | None, started: float) -> None:
    prune = monitor.sweeps % 60 == 0  # about once a minute at the default interval
    result.finished_at = timezone.now()
    result.duration_ms = (time.perf_counter() - started) * 1000
    monitor.last_sweep_at = result.finished_at
    monitor.last_sweep_duration_ms = round(result.duration_ms, 3)
    monitor.sweeps = F("sweeps") + 1
    monitor.positions_checked = F("positions_checked") + result.checked
    monitor.positions_closed = F("positions_closed") + len(result.closed)
    monitor.last_sweep_checked = result.checked
    monitor.last_sweep_closed = len(result.closed)
    previously_failed = set(monitor.last_sweep_failed_symbols or [])
    monitor.last_sweep_failed_symbols = sorted(result.failed)
    fields = [
        "last_sweep_at",
        "last_sweep_duration_ms",
        "sweeps",
        "positions_checked",
        "positions_closed",
        "last_sweep_checked",
        "last_sweep_closed",
        "last_sweep_failed_symbols",
        "lease_expires_at",
    ]
    if result.failed:
        monitor.quote_failures = _merge_failures(
            monitor.quote_failures, result.failed, result.finished_at, previously_failed
        )
        fields.append("quote_failures")
    if not result.error and (result.failed_positions or monitor.close_failures):
        monitor.close_failures = _current_close_failures(
            monitor.close_failures, result.failed_positions, result.finished_at
        )
        fields.append("close_failures")
    if result.error:
        monitor.errors = F("errors") + 1
        monitor.last_error = result.error[:2000]
        monitor.last_error_at = result.finished_at
        fields += ["errors", "last_error", "last_error_at"]
    monitor.save(update_fields=fields)
    SweepRun.objects.create(
        started_at=result.started_at,
        finished_at=result.finished_at,
        duration_ms=result.duration_ms,
        owner=lease_owner or "",
        checked=result.checked,
        closed=len(result.closed),
        failed_symbols=len(result.failed),
        error=result.error[:2000],
    )
    if prune:
        SweepRun.objects.filter(started_at__lt=result.started_at - SWEEP_LOG_KEEP).delete()


def _record_error(result: SweepResult, *, lease_owner: str | None, started: float) -> None:
    try:
        with transaction.atomic():
            _record_sweep(_lock_monitor(lease_owner), result, lease_owner=lease_owner, started=started)
    except LeaseLost:
        pass
    except Exception:
        logger.exception("could not record the auto-close sweep error")
