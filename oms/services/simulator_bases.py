"""The simulator's base price per symbol: the entry price of the symbol's first position.

Installed into `pricing.sources.simulator` by `OmsConfig.ready()`, so `pricing` keeps knowing
nothing of positions.
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Min

from oms.models import Position


def first_entry_prices(symbols: list[str]) -> dict[str, Decimal]:
    """{symbol: entry price of its first position} for the symbols that have one (two small queries)."""
    first_ids = (
        Position.objects.filter(symbol__in=symbols)
        .values("symbol")
        .annotate(first_id=Min("id"))
        .values_list("first_id", flat=True)
    )
    return dict(Position.objects.filter(pk__in=list(first_ids)).values_list("symbol", "entry_price"))
