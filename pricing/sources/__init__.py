"""Price source backends and the factory that picks one from settings."""

from __future__ import annotations

import logging
import threading
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from pricing.quotes import PriceMode, PriceQuote, PriceSourceType, QuoteError, select_price
from pricing.sources.base import PriceSource

logger = logging.getLogger("loms.pricing")

# One cached source per thread: exchange sources keep their HTTP connections open between
# sweeps, a replay source keeps its clock. The key holds every setting the source depends on,
# so changed settings (tests, reloads) build a fresh one.
_cache = threading.local()


def _settings_key() -> tuple:
    key: tuple = (
        settings.PRICE_SOURCE,
        settings.PRICE_MODE,
        settings.PRICE_EXCHANGE,
        settings.PRICE_HTTP_TIMEOUT,
        settings.PRICE_MAX_AGE_SEC,
        settings.BYBIT_BASE_URL,
        settings.BYBIT_CATEGORY,
        settings.BITGET_BASE_URL,
        settings.BITGET_PRODUCT,
        str(settings.REPLAY_FILE),
    )
    if settings.PRICE_SOURCE == PriceSourceType.REPLAY:
        try:
            key += (Path(settings.REPLAY_FILE).stat().st_mtime_ns,)  # a re-recorded file is reloaded
        except OSError:
            pass
    return key


def reset_price_source_cache() -> None:
    """Forget this thread's cached source (tests; after changing a replay file in place)."""
    _cache.__dict__.pop("entry", None)


def get_price_source() -> PriceSource:
    """The price source configured by PRICE_SOURCE / PRICE_EXCHANGE / PRICE_MODE and friends.

    The simulator and the dummy exchange are built afresh on every call (a seeded simulator
    gives the same first price each time, as before); exchange and replay sources are cached
    per thread and settings.
    """
    if settings.PRICE_SOURCE == PriceSourceType.SIMULATOR or (
        settings.PRICE_SOURCE == PriceSourceType.EXCHANGE and settings.PRICE_EXCHANGE == "dummy"
    ):
        return build_price_source()
    key = _settings_key()
    entry = getattr(_cache, "entry", None)
    if entry is None or entry[0] != key:
        entry = _cache.entry = (key, build_price_source())
    return entry[1]


def build_price_source() -> PriceSource:
    """A new source from settings (no caching)."""
    mode = PriceMode(settings.PRICE_MODE)
    source_type = PriceSourceType(settings.PRICE_SOURCE)
    if source_type is PriceSourceType.SIMULATOR:
        from pricing.sources.simulator import SimulatorSource, installed_base_price_provider

        return SimulatorSource(
            seed=settings.PRICE_SIMULATOR_SEED, mode=mode, base_prices=installed_base_price_provider()
        )
    if source_type is PriceSourceType.EXCHANGE:
        http = {"timeout": settings.PRICE_HTTP_TIMEOUT, "max_age_sec": settings.PRICE_MAX_AGE_SEC, "mode": mode}
        if settings.PRICE_EXCHANGE == "dummy":
            from pricing.sources.dummy import DummySource

            return DummySource(mode=mode)
        if settings.PRICE_EXCHANGE == "bybit":
            from pricing.sources.bybit import BybitSource

            return BybitSource(base_url=settings.BYBIT_BASE_URL, category=settings.BYBIT_CATEGORY, **http)
        if settings.PRICE_EXCHANGE == "bitget":
            from pricing.sources.bitget import BitgetSource

            return BitgetSource(base_url=settings.BITGET_BASE_URL, product=settings.BITGET_PRODUCT, **http)
    if source_type is PriceSourceType.REPLAY:
        from pricing.sources.replay import ReplayFileError, ReplaySource, shared_replay_anchor

        if not settings.REPLAY_FILE:
            raise ImproperlyConfigured("REPLAY_FILE: required when PRICE_SOURCE=replay")
        try:
            return ReplaySource(
                settings.REPLAY_FILE,
                mode=mode,
                max_age_sec=settings.PRICE_MAX_AGE_SEC,
                realtime=True,
                anchor=shared_replay_anchor(settings.REPLAY_FILE, settings.DATA_DIR),  # one clock for all
            )
        except ReplayFileError as exc:
            raise ImproperlyConfigured(f"REPLAY_FILE: {exc}") from None
    raise ImproperlyConfigured(
        f"PRICE_SOURCE={settings.PRICE_SOURCE} / PRICE_EXCHANGE={settings.PRICE_EXCHANGE}: no such price source"
    )


def fetch_prices(
    source: PriceSource, symbols: list[str], mode: PriceMode
) -> tuple[dict[str, tuple[Decimal, PriceQuote]], dict[str, str]]:
    """One batch of quotes → ({symbol: (price in `mode`, quote)}, {symbol: why it has no usable price}).

    Never raises: a failing source is a failed quote for every symbol, never a crashed caller.
    """
    prices: dict[str, tuple[Decimal, PriceQuote]] = {}
    failed: dict[str, str] = {}
    try:
        quotes = source.get_quotes(symbols)
    except Exception as exc:  # a source bug must not stop a sweep or a page
        logger.exception("price source failed")
        return {}, {symbol: f"price source error: {type(exc).__name__}: {exc}" for symbol in symbols}
    for symbol in symbols:
        quote = quotes.get(symbol)
        if quote is None:
            failed[symbol] = "no quote returned"
        elif isinstance(quote, QuoteError):
            failed[symbol] = quote.reason
        else:
            try:
                prices[symbol] = (select_price(quote, mode), quote)
            except QuoteError as exc:
                failed[symbol] = exc.reason
    return prices, failed
