"""Price source backends and the factory that picks one from settings."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from pricing.quotes import PriceMode, PriceSourceType
from pricing.sources.base import PriceSource


def get_price_source() -> PriceSource:
    """The price source configured by PRICE_SOURCE / PRICE_EXCHANGE / PRICE_MODE."""
    mode = PriceMode(settings.PRICE_MODE)
    source_type = PriceSourceType(settings.PRICE_SOURCE)
    if source_type is PriceSourceType.SIMULATOR:
        from pricing.sources.simulator import SimulatorSource

        return SimulatorSource(seed=settings.PRICE_SIMULATOR_SEED, mode=mode)
    if source_type is PriceSourceType.EXCHANGE:
        if settings.PRICE_EXCHANGE == "dummy":
            from pricing.sources.dummy import DummySource

            return DummySource(mode=mode)
    raise ImproperlyConfigured(
        f"PRICE_SOURCE={settings.PRICE_SOURCE} / PRICE_EXCHANGE={settings.PRICE_EXCHANGE}: no such price source"
    )
