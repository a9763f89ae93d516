"""Fast synthetic books for the benchmarks (bulk_create in batches; Django must be set up)."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from oms.models import CloseReason, Position, PositionStatus
from oms.services.book import book_changed
from oms.services.figures import book_figures_rebuild, book_figures_record_open

SYMBOLS = [f"S{i:03d}USDT" for i in range(100)]
STRATEGIES = ["bounce_ema10_strict", "bounce_ema20", "breakout_v2", "mean_revert", "scalp_1m"]
EXCHANGES = ["bitget", "bybit"]
REASONS = [
    CloseReason.TP,
    CloseReason.SL,
    CloseReason.SL,
    CloseReason.TRAILING_SL,
    CloseReason.TIMEOUT,
    CloseReason.MANUAL,
]
Q = Decimal("0.0001")


def _closed(rng: random.Random, now) -> Position:
    created = now - timedelta(seconds=rng.randint(600, 365 * 86400))
    closed = created + timedelta(seconds=rng.randint(10, 86400))
    if closed > now:
        closed = now
    side = "long" if rng.random() < 0.6 else "short"
    entry = Decimal(rng.randint(5_000, 200_000)) / 100
    qty = Decimal(rng.randint(1, 500)) / 100
    move = Decimal(rng.uniform(-0.03, 0.05)).quantize(Q)
    close_price = (entry * (1 + move)).quantize(Q)
    sign = 1 if side == "long" else -1
    fee = (entry * qty * Decimal("0.0012")).quantize(Q)
    pnl = ((close_price - entry) * qty * sign - fee).quantize(Q)
    return Position(
        exchange=rng.choice(EXCHANGES),
        symbol=rng.choice(SYMBOLS),
        side=side,
        qty=qty,
        strategy=rng.choice(STRATEGIES),
        timeframe_min=5,
        entry_price=entry,
        tp_price=(entry * Decimal("1.045")).quantize(Q),
        sl_price=(entry * Decimal("0.985")).quantize(Q),
        status=PositionStatus.CLOSED,
        created_at=created,
        closed_at=closed,
        close_price=close_price,
        pnl=pnl,
        fee=fee,
        auto_close_reason=rng.choice(REASONS),
    )


def open_position(index: int, *, now, symbols: int = 100, trigger: bool = False, age_s: int = 3600) -> Position:
    """An open long at 100 on symbol index % symbols. `trigger`: TP below 100 (closes at a price of 100)."""
    entry = Decimal("100")
    return Position(
        exchange="bitget",
        symbol=SYMBOLS[index % symbols],
        side="long",
        qty=Decimal("1"),
        strategy=STRATEGIES[index % len(STRATEGIES)],
        timeframe_min=5,
        entry_price=entry,
        tp_price=Decimal("99.5") if trigger else Decimal("150"),
        sl_price=Decimal("50"),
        status=PositionStatus.OPEN,
        created_at=now - timedelta(seconds=age_s),
    )


def seed_closed_positions(count: int, *, seed: int = 42, batch: int = 5000) -> None:
    """Add `count` closed positions spread over the last year, 100 symbols, 5 strategies, 2 exchanges."""
    rng = random.Random(seed + Position.objects.count())
    now = timezone.now()
    remaining = count
    while remaining > 0:
        size = min(batch, remaining)
        with transaction.atomic():
            Position.objects.bulk_create([_closed(rng, now) for _ in range(size)], batch_size=batch)
            book_changed()  # as the services do: figures cached over the old book are stale
        remaining -= size
    book_figures_rebuild()  # inserted in bulk, in no closing order: the figures from scratch, once


def seed_open_positions(count: int, *, symbols: int = 100, trigger: bool = False, batch: int = 5000) -> None:
    now = timezone.now()
    for start in range(0, count, batch):
        with transaction.atomic():
            rows = [
                open_position(i, now=now, symbols=symbols, trigger=trigger)
                for i in range(start, min(count, start + batch))
            ]
            Position.objects.bulk_create(rows, batch_size=batch)
            book_changed()
            book_figures_record_open(rows)


def close_all_open(*, reason: str = CloseReason.MANUAL) -> int:
    """Mark every open position closed at its entry price (resets the book between phases)."""
    from django.db.models import F

    now = timezone.now()
    with transaction.atomic():
        closed = Position.objects.open().update(
            status=PositionStatus.CLOSED,
            closed_at=now,
            close_price=F("entry_price"),
            pnl=Decimal("0"),
            auto_close_reason=reason,
        )
        book_changed()
    book_figures_rebuild()  # closed behind the services' back
    return closed
