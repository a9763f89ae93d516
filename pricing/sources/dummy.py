"""Fixed quotes around 100: the `dummy` exchange, for wiring checks without a network."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone

from pricing.quotes import PriceMode, PriceQuote
from pricing.sources.base import PerSymbolBatchMixin

DUMMY_LAST = Decimal("100.00")
DUMMY_HALF_SPREAD = Decimal("0.05")


class DummySource(PerSymbolBatchMixin):
    name = "dummy"

    def __init__(self, *, mode: PriceMode = PriceMode.LAST) -> None:
        self.mode = mode

    def describe(self) -> str:
        return f"dummy (fixed {DUMMY_LAST} ± {DUMMY_HALF_SPREAD}, no network)"

    def get_quote(self, symbol: str) -> PriceQuote:
        return PriceQuote(
            symbol=symbol,
            ts=timezone.now(),
            bid=DUMMY_LAST - DUMMY_HALF_SPREAD,
            ask=DUMMY_LAST + DUMMY_HALF_SPREAD,
            last=DUMMY_LAST,
            mark=DUMMY_LAST,
            source=self.name,
            mode=self.mode,
        )
