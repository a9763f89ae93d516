"""Mark open positions to market: what closing them now would book (one quote batch per call)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from oms.models import CloseReason, Position
from oms.services.closing import CloseRefused, close_values
from pricing.quotes import PriceMode
from pricing.sources import fetch_prices, get_price_source


@dataclass(frozen=True)
class PositionMark:
    market_price: Decimal | None = None  # the quote in the configured price mode
    close_price: Decimal | None = None  # after paper slippage: what a close would book
    pnl: Decimal | None = None  # net of entry and exit fees
    error: str = ""


def positions_marks(positions: Iterable[Position]) -> dict[int, PositionMark]:
    """Marks for the open positions among `positions`, keyed by id: one `get_quotes` call in all."""
    open_positions = [p for p in positions if p.is_open]
    if not open_positions:
        return {}
    symbols = list(dict.fromkeys(p.symbol for p in open_positions))
    prices, failed = fetch_prices(get_price_source(), symbols, PriceMode(settings.PRICE_MODE))
    now = timezone.now()
    marks = {}
    for position in open_positions:
        if position.symbol not in prices:
            marks[position.pk] = PositionMark(error=failed.get(position.symbol, "no quote"))
            continue
        price = prices[position.symbol][0]
        try:
            values = close_values(position=position, price=price, reason=CloseReason.MANUAL, now=now)
        except CloseRefused as exc:
            marks[position.pk] = PositionMark(error=f"cannot be closed: {exc}")
            continue
        marks[position.pk] = PositionMark(market_price=price, close_price=values["close_price"], pnl=values["pnl"])
    return marks
