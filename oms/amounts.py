"""What the book's amount columns can hold: the one rule for every amount that enters the book.

Prices, quantities, levels, PnL and fees are `DecimalField(max_digits=28, decimal_places=10)`: at
most 10 decimal places and 18 integer digits. An amount is refused at the door (a 400 naming the
field) when storing it would change it or when the sweep could later fail on it:

- more than 10 decimal places: the column would round it (1e-11 would become 0, and every sweep
  would then fail on the order's `qty > 0` check, or divide by a zero entry price);
- a derived level (TP/SL from a percentage) that rounds to 0 or onto the entry price itself;
- a position whose notional (price × qty at the entry or at a level) is above `MAX_NOTIONAL`: its
  PnL at a close even `MAX_MOVE` times the entry price, and its fees, still fit in 18 integer
  digits, so no close can overflow the column (PostgreSQL: numeric overflow in every sweep).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings

from oms.pnl import levels_from_pct

QUANT = Decimal("1e-10")  # 10 decimal places
COLUMN_LIMIT = Decimal("1e18")  # 28 digits - 10 decimal places = 18 integer digits
MAX_PRICE = Decimal("1e12")
MAX_MOVE = Decimal("1000")  # a close price up to 1000 × the entry (or level) is booked without overflow
MAX_NOTIONAL = COLUMN_LIMIT / MAX_MOVE / 10  # 1e14: PnL ≤ notional × MAX_MOVE < 1e17, fees far below


def amount_error(value: Decimal) -> str | None:
    """Why the column cannot hold `value` exactly (a positive amount), or None when it can."""
    if not value.is_finite() or value <= 0:
        return "Must be a finite number greater than 0."
    if value >= COLUMN_LIMIT:
        return "Too large to store (at most 18 integer digits)."
    if value.quantize(QUANT) == 0:
        return "Too small: it rounds to 0 at 10 decimal places."
    if value != value.quantize(QUANT):
        return "Has more than 10 decimal places: it cannot be stored exactly."
    return None


def _notional_error(price: Decimal, qty: Decimal, what: str) -> str | None:
    if price * qty > MAX_NOTIONAL:
        return (
            f"{what} × qty is above {MAX_NOTIONAL:,.0f}: the PnL and fees of this position could overflow "
            "the book's columns."
        )
    return None


def position_amount_errors(
    *,
    entry_price: Decimal,
    qty: Decimal,
    tp_price: Decimal | None,
    sl_price: Decimal | None,
    names: dict[str, str] | None = None,
) -> dict[str, list[str]]:
    """Field errors for the amounts of a position about to be opened (empty when it can be stored).

    `names` renames the fields in the errors (the signal calls the entry `price`)."""
    names = {
        "entry_price": "entry_price",
        "qty": "qty",
        "tp_price": "tp_price",
        "sl_price": "sl_price",
        **(names or {}),
    }
    errors: dict[str, list[str]] = {}
    for field, value in (("entry_price", entry_price), ("qty", qty), ("tp_price", tp_price), ("sl_price", sl_price)):
        message = None if value is None else amount_error(value)
        if message:
            errors.setdefault(names[field], []).append(message)
    if errors:
        return errors
    notional = _notional_error(entry_price, qty, "price")
    if notional:
        return {"notional": [notional]}
    for field, level in (("tp_price", tp_price), ("sl_price", sl_price)):
        if level is not None and (message := _notional_error(level, qty, "level")):
            errors.setdefault(names[field], []).append(message)
    return errors


def levels_for_storage(
    *, side: str, price: Decimal, tp_pct: Decimal, sl_pct: Decimal
) -> tuple[tuple[Decimal, Decimal], dict[str, list[str]]]:
    """The TP/SL levels `tp_pct`/`sl_pct` away from `price` as the columns store them (10 places), and
    errors (keyed `tp_pct`/`sl_pct`) when a stored level would be 0 or no longer on its side of the entry."""
    tp, sl = (level.quantize(QUANT) for level in levels_from_pct(side=side, price=price, tp_pct=tp_pct, sl_pct=sl_pct))
    sign = 1 if side == "long" else -1
    errors: dict[str, list[str]] = {}
    if tp <= 0:
        errors["tp_pct"] = ["Too large for a short: the take-profit level would be 0."]
    elif (tp - price) * sign <= 0:
        errors["tp_pct"] = ["Too small for this price: the take-profit level rounds onto the entry price."]
    if sl <= 0:
        errors["sl_pct"] = ["Too large for a long: the stop-loss level would be 0."]
    elif (price - sl) * sign <= 0:
        errors["sl_pct"] = ["Too small for this price: the stop-loss level rounds onto the entry price."]
    return (tp, sl), errors


def level_distance_errors(
    *, tp_pct: Decimal | None, sl_pct: Decimal | None, names: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """Value sanity (issue #12 §3): a TP/SL distance from the entry, in percent, nearer than
    `MIN_TP_SL_PCT` (fees and spread would eat it) or farther than `MAX_TP_PCT` / `MAX_SL_PCT`
    is refused; errors keyed `tp_pct`/`sl_pct` unless `names` renames them."""
    names = {"tp_pct": "tp_pct", "sl_pct": "sl_pct", **(names or {})}
    errors: dict[str, list[str]] = {}
    minimum = settings.MIN_TP_SL_PCT
    for field, pct, maximum, setting, what in (
        ("tp_pct", tp_pct, settings.MAX_TP_PCT, "MAX_TP_PCT", "take-profit"),
        ("sl_pct", sl_pct, settings.MAX_SL_PCT, "MAX_SL_PCT", "stop-loss"),
    ):
        if pct is None:
            continue
        if pct < minimum:
            errors[names[field]] = [
                f"The {what} is {pct:.4f} % from the entry, nearer than MIN_TP_SL_PCT "
                f"({minimum} %): fees and spread would eat it."
            ]
        elif pct > maximum:
            errors[names[field]] = [f"The {what} is {pct:.4f} % from the entry, farther than {setting} ({maximum} %)."]
    return errors


def level_distance_pct(*, entry_price: Decimal, level: Decimal | None) -> Decimal | None:
    """How far `level` is from `entry_price`, in percent of the entry (None without a level)."""
    if level is None:
        return None
    return abs(level - entry_price) * 100 / entry_price
