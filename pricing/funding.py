"""Funding of perpetuals: the settled funding events an exchange publishes (public endpoints only).

A perpetual's holders pay each other at every funding time: longs pay shorts when the rate is
positive, shorts pay longs when it is negative. Paper trading charges the same (oms/services/funding.py)
when its prices come from an exchange's perpetuals; the simulator, the replay and spot have no funding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings

from pricing.quotes import PriceSourceType


class FundingError(Exception):
    """The funding of a symbol could not be read; its positions wait for the next run."""

    def __init__(self, symbol: str, reason: str) -> None:
        super().__init__(f"{symbol}: {reason}")
        self.symbol = symbol
        self.reason = reason


@dataclass(frozen=True)
class FundingEvent:
    """One settled funding: at `time`, `rate` of each position's notional changed hands."""

    symbol: str
    time: datetime
    rate: Decimal


def parse_rate(symbol: str, raw: object) -> Decimal:
    """A finite Decimal funding rate (zero and negative rates are normal); FundingError otherwise."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise FundingError(symbol, f"fundingRate is not a number: {raw!r}")
    try:
        rate = Decimal(str(raw).strip())
    except InvalidOperation:
        raise FundingError(symbol, f"fundingRate is not a number: {str(raw)[:40]!r}") from None
    if not rate.is_finite() or abs(rate) >= 1:
        raise FundingError(symbol, f"fundingRate out of range: {raw}")
    return rate


def funding_source_or_reason():
    """(the price source, "") when paper funding applies, else (None, why it does not).

    Funding needs PAPER_FUNDING on and prices from an exchange's perpetuals (Bybit `linear`,
    Bitget `usdt-futures`): off for the simulator, the dummy exchange, a replay and spot.
    """
    if not settings.PAPER_FUNDING:
        return None, "PAPER_FUNDING is off"
    if settings.PRICE_SOURCE != PriceSourceType.EXCHANGE or settings.PRICE_EXCHANGE == "dummy":
        return None, f"no funding with PRICE_SOURCE={settings.PRICE_SOURCE} / PRICE_EXCHANGE={settings.PRICE_EXCHANGE}"
    from pricing.sources import get_price_source

    source = get_price_source()
    if not getattr(source, "has_funding", False):
        return None, f"no funding on {source.describe()} (spot)"
    return source, ""
