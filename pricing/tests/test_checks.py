from __future__ import annotations

import pytest

from pricing.checks import check_mark_mode_has_a_mark_price


@pytest.mark.parametrize(
    ("exchange", "key", "value", "warned"),
    [
        ("bybit", "BYBIT_CATEGORY", "spot", True),
        ("bybit", "BYBIT_CATEGORY", "linear", False),
        ("bitget", "BITGET_PRODUCT", "spot", True),
        ("bitget", "BITGET_PRODUCT", "usdt-futures", False),
    ],
)
def test_mark_mode_on_a_spot_ticker_is_warned_about(settings, exchange, key, value, warned):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_MODE = "mark"
    settings.PRICE_EXCHANGE = exchange
    setattr(settings, key, value)

    ids = [message.id for message in check_mark_mode_has_a_mark_price()]

    assert ids == (["pricing.W001"] if warned else [])


def test_other_modes_on_spot_are_fine(settings):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "bybit"
    settings.BYBIT_CATEGORY = "spot"
    settings.PRICE_MODE = "last"

    assert check_mark_mode_has_a_mark_price() == []
