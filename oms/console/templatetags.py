"""Number and state formatting for the console templates."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


@register.filter
def price(value, digits: int | str = 10) -> str:
    """A price or quantity with at most `digits` significant digits, without trailing zeros:
    104.5, 0.00012345, 3 (`price:"6"` for compact columns)."""
    number = _decimal(value)
    if number is None:
        return "—"
    if number and number.is_finite():
        exponent = number.adjusted() - int(digits) + 1
        number = number.quantize(Decimal(1).scaleb(min(exponent, 0)))
    text = f"{number:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@register.filter
def money(value, places: int = 4) -> str:
    """Signed money: +2.0000, −1.5000, 0.0000."""
    number = _decimal(value)
    if number is None:
        return "—"
    text = f"{abs(number):,.{int(places)}f}"
    if number > 0:
        return f"+{text}"
    if number < 0:
        return f"\u2212{text}"
    return text


@register.filter
def sign_class(value) -> str:
    number = _decimal(value)
    if number is None or number == 0:
        return "flat"
    return "pos" if number > 0 else "neg"


@register.filter
def seconds(value) -> str:
    """An age in seconds as 0.8 s, 42 s, 3 min, 2 h 5 min."""
    if value is None:
        return "never"
    value = float(value)
    if value < 10:
        return f"{value:.1f} s"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


@register.filter
def percent(value, places: int = 1) -> str:
    number = _decimal(value)
    return "—" if number is None else f"{number:.{int(places)}f}%"
