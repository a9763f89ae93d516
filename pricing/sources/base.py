"""The price source protocol shared by every backend."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Protocol, runtime_checkable

from pricing.quotes import PriceQuote, QuoteError


@runtime_checkable
class PriceSource(Protocol):
    """Turns symbols into quotes. Knows nothing of positions."""

    name: str

    def get_quote(self, symbol: str) -> PriceQuote:
        """One quote; raises QuoteError when no usable quote can be had."""
        ...

    def get_quotes(self, symbols: Iterable[str]) -> dict[str, PriceQuote | QuoteError]:
        """One entry per distinct symbol: its quote or the error that prevented it."""
        ...


class PerSymbolBatchMixin:
    """`get_quotes` for sources without a batch endpoint: one `get_quote` per distinct symbol."""

    def get_quotes(self, symbols: Iterable[str]) -> dict[str, PriceQuote | QuoteError]:
        results: dict[str, PriceQuote | QuoteError] = {}
        for symbol in dict.fromkeys(symbols):
            try:
                results[symbol] = self.get_quote(symbol)  # type: ignore[attr-defined]
            except QuoteError as exc:
                results[symbol] = exc
        return results


def parse_price(symbol: str, field: str, raw: object, *, required: bool = True) -> Decimal | None:
    """A strictly positive finite Decimal from a JSON/CSV value; absent (None) only when not required.

    Raises QuoteError for an empty, non-numeric, non-finite, zero or negative price.
    """
    if raw is None:
        if required:
            raise QuoteError(symbol, f"{field} missing")
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
        raise QuoteError(symbol, f"{field} is not a number: {raw!r}")
    text = str(raw).strip()
    if not text:
        raise QuoteError(symbol, f"{field} is empty")
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise QuoteError(symbol, f"{field} is not a number: {text[:40]!r}") from None
    if not price.is_finite():
        raise QuoteError(symbol, f"{field} is not a finite number: {text[:40]!r}")
    if price <= 0:
        raise QuoteError(symbol, f"{field} is not positive: {text}")
    return price


def check_fresh(quote: PriceQuote, *, now: datetime, max_age_sec: float | None) -> PriceQuote:
    """`quote` itself, or QuoteError when it is older than `max_age_sec` at `now`."""
    if max_age_sec is not None:
        age = (now - quote.ts).total_seconds()
        if age > max_age_sec:
            raise QuoteError(quote.symbol, f"stale quote: {age:.1f}s old, limit {max_age_sec:g}s")
    return quote
