"""Random quotes around each symbol's own base price, as the old system produced around 100; seedable.

The base of a symbol is its first entry price when a base-price provider is installed (the OMS
installs `oms.services.simulator_bases.first_entry_prices` at start-up, see `oms/apps.py`): an ETH
position entered at 2000 is then quoted around 2000, never around 100 (an ETH short at 2000 once
closed at 107 for +1 893). Symbols never traded, and sources built without a provider (tests,
what-if runs), use `BASE_PRICE`. Quotes deviate at most `MAX_DEVIATION` percent from the base, with
a half spread of `HALF_SPREAD` (relative, 0.01 at 100): around 100 the numbers are the old ones.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from decimal import Decimal

from django.utils import timezone

from pricing.quotes import PriceMode, PriceQuote, QuoteError
from pricing.sources.base import PerSymbolBatchMixin

logger = logging.getLogger("loms.pricing")

BASE_PRICE = Decimal("100")
MAX_DEVIATION = 10.0  # percent of the base
HALF_SPREAD = Decimal("0.0001")  # of the base

BasePrices = Callable[[list[str]], dict[str, Decimal]]
_provider: list[BasePrices] = []


def install_base_price_provider(provider: BasePrices | None) -> None:
    """Let the configured simulator quote each symbol around `provider([symbols])[symbol]`."""
    _provider[:] = [provider] if provider else []


def installed_base_price_provider() -> BasePrices | None:
    return _provider[0] if _provider else None


class SimulatorSource(PerSymbolBatchMixin):
    name = "simulator"

    def __init__(
        self, *, seed: int | None = None, mode: PriceMode = PriceMode.LAST, base_prices: BasePrices | None = None
    ) -> None:
        self._random = random.Random(seed)
        self.mode = mode
        self._base_prices = base_prices
        self._bases: dict[str, Decimal] = {}

    def describe(self) -> str:
        around = "each symbol's first entry price" if self._base_prices else str(BASE_PRICE)
        return f"simulator (random {around} ± {MAX_DEVIATION:g} %, no network)"

    def _load_bases(self, symbols: list[str]) -> None:
        wanted = [symbol for symbol in symbols if symbol not in self._bases]
        if not self._base_prices or not wanted:
            return
        try:
            found = self._base_prices(wanted)
        except Exception as exc:  # e.g. the database is unavailable: quote around BASE_PRICE
            logger.warning("simulator base prices unavailable (%s): quoting around %s", type(exc).__name__, BASE_PRICE)
            return
        self._bases.update({symbol: Decimal(price) for symbol, price in found.items() if price and price > 0})

    def get_quotes(self, symbols: Iterable[str]) -> dict[str, PriceQuote | QuoteError]:
        symbols = list(dict.fromkeys(symbols))
        self._load_bases(symbols)  # one lookup for the whole batch
        return super().get_quotes(symbols)

    def get_quote(self, symbol: str) -> PriceQuote:
        self._load_bases([symbol])
        base = self._bases.get(symbol, BASE_PRICE)
        deviation = Decimal(str(round(self._random.uniform(-MAX_DEVIATION, MAX_DEVIATION), 4)))
        places = max(4, 6 - base.adjusted())  # 4 decimals around 100, more for small prices
        last = (base + base * deviation / 100).quantize(Decimal(1).scaleb(-places))
        half_spread = (base * HALF_SPREAD).quantize(Decimal(1).scaleb(-places))
        return PriceQuote(
            symbol=symbol,
            ts=timezone.now(),
            bid=last - half_spread,
            ask=last + half_spread,
            last=last,
            mark=last,
            source=self.name,
            mode=self.mode,
        )
