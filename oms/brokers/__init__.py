"""Brokers: the paper simulator and the exchange adapters behind one interface (`base.Broker`).

`get_broker()` picks one from `BROKER_MODE` and `BROKER_EXCHANGE`. In paper mode no exchange
client is even built, so no private request can leave the process.
"""

from __future__ import annotations

import threading

from django.conf import settings

from oms.brokers.base import Broker

_cache: dict[tuple, Broker] = {}
_lock = threading.Lock()


def get_broker() -> Broker:
    """The broker of this process (one per configuration: markets are loaded once)."""
    mode, exchange = settings.BROKER_MODE, settings.BROKER_EXCHANGE
    if mode == "paper":
        from oms.brokers.paper import PaperBroker

        return PaperBroker()
    key = (mode, exchange, settings.BITGET_BASE_URL, settings.BYBIT_BASE_URL)
    with _lock:
        if key not in _cache:
            if exchange == "bybit":
                from oms.brokers.bybit import BybitBroker

                _cache[key] = BybitBroker(mode)
            else:
                from oms.brokers.bitget import BitgetBroker

                _cache[key] = BitgetBroker(mode)
        return _cache[key]


def reset_brokers() -> None:
    """Forget the built clients (tests change settings between cases)."""
    with _lock:
        _cache.clear()
