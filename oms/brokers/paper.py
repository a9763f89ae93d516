"""The paper broker: fills at once, at the signal's price on entry and at the market price on exit,
with `PAPER_SLIPPAGE_BPS` and `PAPER_FEE_RATE` (exactly what `positions.close_values` books)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings

from oms.brokers.base import Broker, Fill
from oms.pnl import fee_for, slipped_close_price


class PaperBroker(Broker):
    name = "paper"
    mode = "paper"
    is_paper = True

    def open(
        self,
        *,
        symbol: str,
        side: str,
        qty: Decimal,
        price: Decimal,
        client_order_id: str = "",
        tp_price: Decimal | None = None,
        sl_price: Decimal | None = None,
    ) -> Fill:
        return Fill(
            status="filled", price=price, qty=qty, fee=fee_for(price=price, qty=qty, rate=settings.PAPER_FEE_RATE)
        )

    def close(self, *, symbol: str, side: str, qty: Decimal, price: Decimal | None, client_order_id: str = "") -> Fill:
        if price is None:
            raise ValueError("the paper broker closes at a given market price")
        close_price = slipped_close_price(side=side, price=price, slippage_bps=settings.PAPER_SLIPPAGE_BPS)
        return Fill(
            status="filled",
            price=close_price,
            qty=qty,
            fee=fee_for(price=close_price, qty=qty, rate=settings.PAPER_FEE_RATE),
        )
