"""Automatic trips: the OMS switch turns itself off when losses reach a configured limit.

Three limits (empty setting = not checked): `DAILY_LOSS_LIMIT_USDT` (net PnL realized today: the
trades closed and the partial exits of positions still open), `MAX_DRAWDOWN_USDT` (cumulative net
PnL below its peak, the partial exits of open positions included) and `MAX_CONSECUTIVE_SL` (the
newest closed trades all stop-losses). A trip only ever turns the switch off; a person re-arms it.
Every figure counts only what was realized since the switch was last turned on, so re-arming is a
deliberate fresh start rather than an immediate second trip on the same losses.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.metrics import db_decimal
from oms.models import (
    STOP_LOSS_REASONS,
    OmsControl,
    OmsSwitchChange,
    Order,
    Position,
    SwitchSource,
)
from oms.services.switch import oms_switch_set

logger = logging.getLogger("loms.oms")

TRIP_ACTOR = "auto-trip"
ZERO = Decimal("0")


@dataclass(frozen=True)
class TripLimits:
    daily_loss: Decimal | None
    max_drawdown: Decimal | None
    max_consecutive_sl: int | None

    @classmethod
    def from_settings(cls) -> TripLimits:
        return cls(
            daily_loss=getattr(settings, "DAILY_LOSS_LIMIT_USDT", None),
            max_drawdown=getattr(settings, "MAX_DRAWDOWN_USDT", None),
            max_consecutive_sl=getattr(settings, "MAX_CONSECUTIVE_SL", None),
        )

    @property
    def any(self) -> bool:
        return any(limit is not None for limit in (self.daily_loss, self.max_drawdown, self.max_consecutive_sl))


@dataclass(frozen=True)
class TripFigures:
    """What the trips look at, for the trip itself and for the dashboard."""

    armed_at: datetime | None
    daily_loss: Decimal
    drawdown: Decimal
    consecutive_sl: int


def armed_at() -> datetime | None:
    """When the switch was last turned on (None: never recorded, count every trade)."""
    return (
        OmsSwitchChange.objects.filter(enabled=True)
        .order_by("-changed_at", "-id")
        .values_list("changed_at", flat=True)
        .first()
    )


def _closed_since(since: datetime | None):
    closed = Position.objects.closed()
    return closed.filter(closed_at__gt=since) if since else closed


def daily_loss(*, now: datetime, since: datetime | None) -> Decimal:
    """Net loss (positive number, 0 when in profit) realized today (UTC) since `since` (the window):
    the trades closed in it, less their partial exits filled before it (counted then, or realized
    before the switch was armed), and the partial exits filled in it of positions still open."""
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    start = max(day_start, since) if since else day_start
    closed = _closed_since(start).filter(closed_at__lte=now)
    realized = (
        _sum(closed, "pnl")
        - _sum(_partial_exits().filter(position__in=closed, filled_at__lte=start), "partial_exit_pnl")
        + _sum(
            _partial_exits().filter(filled_at__gt=start, filled_at__lte=now).exclude(position__in=closed),
            "partial_exit_pnl",
        )
    )
    return max(-realized, ZERO)


def _partial_exits() -> QuerySet:
    """The exit orders that booked a partial exit, with the time they filled (`filled_at`)."""
    return Order.objects.filter(partial_exit_pnl__isnull=False).alias(filled_at=Coalesce("updated_at", "created_at"))


def _sum(rows: QuerySet, field: str) -> Decimal:
    """Exact on SQLite too, which sums decimals as floats (oms.metrics.db_decimal)."""
    return db_decimal(rows.aggregate(total=Sum(field))["total"])


def current_drawdown(*, since: datetime | None) -> Decimal:
    """Peak of the cumulative net PnL (never below the starting 0) minus its current value
    (oms.metrics.Drawdown.current): the closed trades from the maintained book figures (at most one
    day's closes are read: oms.services.figures.figures_drawdown_since), then, as one step at the
    end, what the partial exits of the positions still open realized since `since` (read through
    the open positions, a few). A trade closed since `since` counts whole, as it always has: after
    a re-arming, that includes what it realized by partial exits before."""
    from oms.services.figures import figures_drawdown_since

    open_partials = _partial_exits().filter(position__in=Position.objects.open())
    if since:
        open_partials = open_partials.filter(filled_at__gt=since)
    return figures_drawdown_since(since).add(_sum(open_partials, "partial_exit_pnl")).current


def consecutive_stop_losses(*, since: datetime | None, limit: int) -> int:
    """How many of the newest closed trades (at most `limit` looked at) are stop-losses in a row."""
    reasons = _closed_since(since).order_by("-closed_at", "-id").values_list("auto_close_reason", flat=True)[:limit]
    count = 0
    for reason in reasons:
        if reason not in STOP_LOSS_REASONS:
            break
        count += 1
    return count


def trip_figures(*, now: datetime | None = None, limits: TripLimits | None = None) -> TripFigures:
    now = now or timezone.now()
    limits = limits or TripLimits.from_settings()
    since = armed_at()
    return TripFigures(
        armed_at=since,
        daily_loss=daily_loss(now=now, since=since),
        drawdown=current_drawdown(since=since) if limits.max_drawdown is not None else ZERO,
        consecutive_sl=consecutive_stop_losses(since=since, limit=limits.max_consecutive_sl or 50),
    )


def trip_reason(figures: TripFigures, limits: TripLimits) -> str | None:
    """The first limit reached, as the reason recorded with the switch change (pure)."""
    if limits.daily_loss is not None and figures.daily_loss > 0 and figures.daily_loss >= limits.daily_loss:
        return f"daily loss {figures.daily_loss:.4f} USDT reached the limit {limits.daily_loss} (DAILY_LOSS_LIMIT_USDT)"
    if limits.max_drawdown is not None and figures.drawdown > 0 and figures.drawdown >= limits.max_drawdown:
        return (
            f"drawdown {figures.drawdown:.4f} USDT from peak equity reached the limit {limits.max_drawdown} "
            "(MAX_DRAWDOWN_USDT)"
        )
    if limits.max_consecutive_sl is not None and figures.consecutive_sl >= limits.max_consecutive_sl:
        return (
            f"{figures.consecutive_sl} consecutive stop-losses reached the limit {limits.max_consecutive_sl} "
            "(MAX_CONSECUTIVE_SL)"
        )
    return None


def trips_check(now: datetime | None = None) -> str | None:
    """Turn the switch off if a trip limit is reached; return the reason, or None when nothing tripped."""
    limits = TripLimits.from_settings()
    if not limits.any or not OmsControl.load().enabled:
        return None  # nothing configured, or already off: a trip never turns anything on
    reason = trip_reason(trip_figures(now=now, limits=limits), limits)
    if reason is None:
        return None
    with transaction.atomic():
        # Locked re-check: two closes finishing together record one trip, not two.
        control = OmsControl.objects.select_for_update().get(pk=OmsControl.load().pk)
        if not control.enabled:
            return None
        oms_switch_set(enabled=False, actor=TRIP_ACTOR, reason=f"automatic trip: {reason}", source=SwitchSource.AUTO)
    log_event(logger, "oms_auto_trip", reason=reason)
    return reason


def _run_trips_check() -> None:
    try:
        trips_check()
    except Exception as exc:  # a failed check must never undo or fail the close that triggered it
        log_event(logger, "oms_auto_trip_failed", level=logging.ERROR, error=f"{type(exc).__name__}: {exc}")


class _PendingCheck(threading.local):
    """Closes that asked for a trip check since the last check ran (per thread, as Django connections are)."""

    requested = 0


_pending = _PendingCheck()


def _run_pending_trips_check() -> None:
    """The on-commit callback. Every close of a transaction registers one; the first to run after the
    commit checks the trips for all of them, the others find nothing pending and return. Callbacks of a
    rolled-back transaction never run, and the next commit's callback clears what they left pending."""
    if not _pending.requested:
        return
    _pending.requested = 0
    _run_trips_check()


def trips_check_on_commit() -> None:
    """Run `trips_check` once after the current transaction commits (once, however many closes it holds).

    Only public API: `transaction.on_commit` and a coalescing callback (no look into Django's queue).
    """
    if not TripLimits.from_settings().any:
        return
    _pending.requested += 1
    transaction.on_commit(_run_pending_trips_check, robust=True)
