"""Brokers: the paper simulator and the exchange adapters behind one interface (`base.Broker`).

`get_broker()` picks one from `BROKER_MODE` and `BROKER_EXCHANGE`. In paper mode no exchange
client is even built, so no private request can leave the process.
"""

from __future__ import annotations

import threading

from django.conf import settings

from oms.brokers.base import Broker

# One client per thread (a ccxt instance is not meant to be shared between threads; gunicorn runs
# several), per configuration; markets are loaded once per client.
_local = threading.local()
_generation = [0]


def get_broker() -> Broker:
    mode, exchange = settings.BROKER_MODE, settings.BROKER_EXCHANGE
    if mode == "paper":
        from oms.brokers.paper import PaperBroker

        return PaperBroker()
    key = (_generation[0], mode, exchange, settings.BITGET_BASE_URL, settings.BYBIT_BASE_URL)
    cache = getattr(_local, "brokers", None)
    if cache is None:
        cache = _local.brokers = {}
    if key not in cache:
        cache.clear()
        if exchange == "bybit":
            from oms.brokers.bybit import BybitBroker

            cache[key] = BybitBroker(mode)
        else:
            from oms.brokers.bitget import BitgetBroker

            cache[key] = BitgetBroker(mode)
    return cache[key]


def reset_brokers() -> None:
    """Forget the built clients in every thread (tests change settings between cases)."""
    _generation[0] += 1
