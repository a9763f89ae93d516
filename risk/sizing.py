"""Sizing by risk (issue #12 §4): a pure function over values. No models here.

A position risks `risk_pct` percent of the current equity between its entry and its stop:
qty = equity × risk_pct / 100 / |entry − stop|, rounded down to `qty_step` (never more risk than
asked), then capped so that its notional fits the per-position ceiling and the exposure still free.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

ZERO = Decimal("0")
HUNDRED = Decimal("100")


@dataclass(frozen=True)
class SizeDecision:
    ok: bool
    qty: Decimal = ZERO
    reason: str = ""


def _floor(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}"


def size_by_risk(
    *,
    equity: Decimal,
    risk_pct: Decimal,
    entry_price: Decimal,
    stop_price: Decimal | None,
    qty_step: Decimal,
    max_notional: Decimal | None = None,
    exposure_room: Decimal | None = None,
) -> SizeDecision:
    """The qty that risks `risk_pct` % of `equity` down to the stop (long or short alike).

    `max_notional`: the largest notional one position may have (None: no ceiling).
    `exposure_room`: the notional still free under the total exposure limit (None: no limit). When
    nothing is free the qty is left uncapped, so the exposure limit refuses it with its own reason.
    """
    if stop_price is None or stop_price == entry_price:
        return SizeDecision(
            False, reason="risk_sizing_needs_stop (RISK_PER_TRADE_PCT sizes by the distance to the stop)"
        )
    if equity <= 0:
        return SizeDecision(False, reason=f"risk_sizing_no_equity (equity={_plain(equity)})")
    risk = equity * risk_pct / HUNDRED
    qty = _floor(risk / abs(entry_price - stop_price), qty_step)
    for cap in (max_notional, exposure_room if exposure_room is None or exposure_room > 0 else None):
        if cap is not None and qty * entry_price > cap:
            qty = _floor(cap / entry_price, qty_step)
    if qty <= 0:
        return SizeDecision(
            False,
            reason=f"risk_sizing_qty_zero (risk={_plain(risk)}, stop_distance={_plain(abs(entry_price - stop_price))})",
        )
    return SizeDecision(True, qty=qty)
