"""The price source protocol shared by every backend."""

from __future__ import annotations

from collections.abc import Iterable
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
