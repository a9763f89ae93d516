"""Mark open positions to market: what closing them now would book (one quote batch per call)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.models import CloseReason, Position
from oms.services.positions import close_values
from pricing.quotes import PriceMode, QuoteError, select_price
from pricing.sources import get_price_source

logger = logging.getLogger("loms.oms")


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
    try:
        quotes = get_price_source().get_quotes(p.symbol for p in open_positions)
    except Exception as exc:  # a page must render even when the price source is down
        log_event(logger, "marks_unavailable", level=logging.WARNING, error=f"{type(exc).__name__}: {exc}")
        return {p.pk: PositionMark(error="price source unavailable") for p in open_positions}
    mode, now = PriceMode(settings.PRICE_MODE), timezone.now()
    marks = {}
    for position in open_positions:
        quote = quotes.get(position.symbol)
        try:
            if quote is None or isinstance(quote, QuoteError):
                raise quote or QuoteError(position.symbol, "no quote returned")
            price = select_price(quote, mode)
        except QuoteError as exc:
            marks[position.pk] = PositionMark(error=exc.reason)
            continue
        values = close_values(position=position, price=price, reason=CloseReason.MANUAL, now=now)
        marks[position.pk] = PositionMark(market_price=price, close_price=values["close_price"], pnl=values["pnl"])
    return marks
