"""Random quotes around 100, as the old system produced; seedable for tests."""

from __future__ import annotations

import random
from decimal import Decimal

from django.utils import timezone

from pricing.quotes import PriceMode, PriceQuote
from pricing.sources.base import PerSymbolBatchMixin

BASE_PRICE = Decimal("100")
MAX_DEVIATION = 10.0
HALF_SPREAD = Decimal("0.01")


class SimulatorSource(PerSymbolBatchMixin):
    name = "simulator"

    def __init__(self, *, seed: int | None = None, mode: PriceMode = PriceMode.LAST) -> None:
        self._random = random.Random(seed)
        self.mode = mode

    def describe(self) -> str:
        return f"simulator (random {BASE_PRICE} ± {MAX_DEVIATION:g}, no network)"

    def get_quote(self, symbol: str) -> PriceQuote:
        last = (BASE_PRICE + Decimal(str(round(self._random.uniform(-MAX_DEVIATION, MAX_DEVIATION), 4))))
        return PriceQuote(
            symbol=symbol,
            ts=timezone.now(),
            bid=last - HALF_SPREAD,
            ask=last + HALF_SPREAD,
            last=last,
            mark=last,
            source=self.name,
            mode=self.mode,
        )
