"""Paper-trading arithmetic: levels, slippage, fees and PnL. Pure functions over Decimals."""

from __future__ import annotations

from decimal import Decimal

HUNDRED = Decimal("100")
BPS = Decimal("10000")


def levels_from_pct(*, side: str, price: Decimal, tp_pct: Decimal, sl_pct: Decimal) -> tuple[Decimal, Decimal]:
    """(tp_price, sl_price) `tp_pct`/`sl_pct` percent away from `price`, mirrored for shorts."""
    up_tp, down_sl = price * (1 + tp_pct / HUNDRED), price * (1 - sl_pct / HUNDRED)
    if side == "long":
        return up_tp, down_sl
    return price * (1 - tp_pct / HUNDRED), price * (1 + sl_pct / HUNDRED)


def slipped_close_price(*, side: str, price: Decimal, slippage_bps: Decimal) -> Decimal:
    """The fill of a closing market order, moved against the position by `slippage_bps`."""
    if not slippage_bps:
        return price
    move = price * slippage_bps / BPS
    return price - move if side == "long" else price + move


def fee_for(*, price: Decimal, qty: Decimal, rate: Decimal) -> Decimal:
    return price * qty * rate


def funding_payment(*, side: str, qty: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    """What a position pays at one funding time: notional (`qty` at `price`) times `rate`, paid by a
    long and received by a short when the rate is positive, the reverse when it is negative.
    Positive = paid (added to the fees), negative = received."""
    amount = price * qty * rate
    return amount if side == "long" else -amount


def gross_pnl(*, side: str, entry_price: Decimal, close_price: Decimal, qty: Decimal) -> Decimal:
    if side == "long":
        return (close_price - entry_price) * qty
    return (entry_price - close_price) * qty
