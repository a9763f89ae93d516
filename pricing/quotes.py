"""Price quotes and price modes: the values every price source produces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class PriceSourceType(StrEnum):
    SIMULATOR = "simulator"
    EXCHANGE = "exchange"
    REPLAY = "replay"


class PriceMode(StrEnum):
    LAST = "last"
    BID = "bid"
    ASK = "ask"
    MID = "mid"
    MARK = "mark"


class QuoteError(Exception):
    """A quote could not be obtained or is unusable; never a reason to close a position."""

    def __init__(self, symbol: str, reason: str) -> None:
        super().__init__(f"{symbol}: {reason}")
        self.symbol = symbol
        self.reason = reason


@dataclass(frozen=True)
class PriceQuote:
    symbol: str
    ts: datetime
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    mark: Decimal | None
    source: str
    mode: PriceMode = PriceMode.LAST

    def as_dict(self) -> dict:
        return {
            "symbol": self.symbol,
            "ts": self.ts.isoformat(),
            "bid": self.bid,
            "ask": self.ask,
            "last": self.last,
            "mark": self.mark,
            "mid": _mid(self),
            "source": self.source,
            "mode": str(self.mode),
        }


def _mid(quote: PriceQuote) -> Decimal | None:
    if quote.bid is None or quote.ask is None:
        return None
    return (quote.bid + quote.ask) / 2


def select_price(quote: PriceQuote, mode: PriceMode | str | None = None) -> Decimal:
    """The price of `quote` for `mode` (default: the quote's own mode).

    A mode the quote cannot serve (e.g. `mark` on a spot ticker) is an error, never a silent
    fallback to another price.
    """
    mode = PriceMode(mode or quote.mode)
    price = _mid(quote) if mode is PriceMode.MID else getattr(quote, mode.value)
    if price is None:
        raise QuoteError(quote.symbol, f"price mode '{mode}' not available from {quote.source}")
    if not price.is_finite() or price <= 0:
        raise QuoteError(quote.symbol, f"non-positive or invalid {mode} price {price}")
    return price
