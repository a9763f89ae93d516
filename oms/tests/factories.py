"""Positions built directly in the database, for tests that need a given book."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from oms.models import Position, PositionStatus
from oms.services.book import book_changed
from oms.services.figures import book_figures_record_open


def open_position(*, symbol="BTCUSDT", side="long", entry="100", qty="1", tp="104.5", sl="98.5", **extra) -> Position:
    book_changed()  # as the services do on every open and close
    position = Position.objects.create(
        exchange="bitget",
        symbol=symbol,
        side=side,
        qty=Decimal(qty),
        entry_price=Decimal(entry),
        tp_price=Decimal(tp) if tp else None,
        sl_price=Decimal(sl) if sl else None,
        **extra,
    )
    book_figures_record_open(position)
    return position


def closed_position(
    *,
    pnl: str,
    closed_at: datetime | None = None,
    reason="tp",
    symbol="BTCUSDT",
    strategy="s1",
    created_at: datetime | None = None,
    fee="0",
    **extra,
) -> Position:
    closed_at = closed_at or timezone.now()
    book_changed()
    position = Position.objects.create(
        exchange=extra.pop("exchange", "bitget"),
        symbol=symbol,
        side=extra.pop("side", "long"),
        qty=Decimal("1"),
        entry_price=Decimal("100"),
        close_price=Decimal("100") + Decimal(pnl),
        pnl=Decimal(pnl),
        fee=Decimal(fee),
        status=PositionStatus.CLOSED,
        created_at=created_at or closed_at - timedelta(minutes=5),
        closed_at=closed_at,
        auto_close_reason=reason,
        strategy=strategy,
        **extra,
    )
    book_figures_record_open(position)  # inserted closed: counted with its close
    return position
