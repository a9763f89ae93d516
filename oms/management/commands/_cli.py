"""Shared bits of the terminal commands over the book: date options and plain-text tables."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal

from django.core.management.base import CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.dateparse import parse_date, parse_datetime

WHEN_HELP = "UTC date (2025-06-19) or date-time (2025-06-19T08:00)"


def parse_when(value: str | None, option: str) -> datetime | None:
    """`2025-06-19` (midnight UTC) or an ISO date-time (UTC unless it says otherwise)."""
    if not value:
        return None
    try:
        moment = parse_datetime(value)
        if moment is None and (day := parse_date(value)) is not None:
            moment = datetime.combine(day, time.min)
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(f"{option}: {value!r} is not a date (2025-06-19) or date-time (2025-06-19T08:00)")
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is past the last representable instant
        raise CommandError(f"{option}: {value!r} is outside the years 1 to 9999 in UTC") from None


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value == value.to_integral() else f"{value:.4f}".rstrip("0").rstrip(".")
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def table(rows: list[dict], columns: list[tuple[str, str]]) -> list[str]:
    """Aligned text lines: `columns` is [(key, heading)]; the first column is left-aligned."""
    cells = [[fmt(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max([len(heading)] + [len(line[i]) for line in cells]) for i, (_, heading) in enumerate(columns)]

    def render(values: list[str]) -> str:
        aligned = (v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True)))
        return "  ".join(aligned)

    return [render([heading for _, heading in columns]), render(["-" * w for w in widths])] + [render(c) for c in cells]


class NumbersJSONEncoder(DjangoJSONEncoder):
    """`--json` output: money and other Decimals as JSON numbers, as the API gives them."""

    def default(self, o):
        if isinstance(o, Decimal):
            return float(o)
        return super().default(o)
