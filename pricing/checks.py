"""System checks for price settings that are valid one by one but cannot work together."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Warning, register


@register()
def check_mark_mode_has_a_mark_price(app_configs=None, **kwargs) -> list[Warning]:
    """PRICE_MODE=mark with a spot ticker: every quote would fail (spot tickers carry no mark price)."""
    if settings.PRICE_MODE != "mark" or settings.PRICE_SOURCE != "exchange":
        return []
    spot = {"bybit": settings.BYBIT_CATEGORY == "spot", "bitget": settings.BITGET_PRODUCT == "spot"}
    if not spot.get(settings.PRICE_EXCHANGE):
        return []
    setting = "BYBIT_CATEGORY" if settings.PRICE_EXCHANGE == "bybit" else "BITGET_PRODUCT"
    return [
        Warning(
            f"PRICE_MODE=mark but {setting}=spot: {settings.PRICE_EXCHANGE} spot tickers have no mark price, "
            "so every quote will fail and no position will auto-close.",
            hint=f"Use PRICE_MODE=last/bid/ask/mid, or a futures {setting}.",
            id="pricing.W001",
        )
    ]
