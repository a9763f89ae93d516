"""Position exports for spreadsheets (CSV) and scripts (JSON lines).

CSV text cells that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab
or a carriage return: a strategy name or external order id sent by a bot, say) are written with a
leading `'`, so they open as text. Numbers (Decimal, int) are never touched: `-12.5` stays a number.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from decimal import Decimal
from typing import TextIO

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet

from oms.models import Position

EXPORT_FIELDS = [
    "id",
    "account_label",
    "exchange",
    "market_type",
    "symbol",
    "side",
    "qty",
    "closed_qty",
    "realized_gross_pnl",
    "strategy",
    "timeframe_min",
    "entry_price",
    "tp_price",
    "sl_price",
    "status",
    "created_at",
    "closed_at",
    "close_price",
    "pnl",
    "fee",
    "funding",  # paper funding paid (negative: received), already counted in `fee`
    "auto_close_reason",
    "exit_strategy",
    "dynamic_tp_price",
    "dynamic_sl_price",
    "max_favorable_move",
    "external_order_id",
]


def _rows(queryset: QuerySet[Position]) -> Iterable[dict]:
    return queryset.order_by("created_at", "id").values(*EXPORT_FIELDS).iterator(chunk_size=2000)


def positions_export(queryset: QuerySet[Position], handle: TextIO, *, fmt: str = "csv") -> int:
    """Write the positions oldest first; returns how many. Times are ISO 8601 UTC, amounts plain decimals."""
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(handle, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        for row in _rows(queryset):
            writer.writerow({key: _cell(value) for key, value in row.items()})
            count += 1
    elif fmt == "jsonl":
        for row in _rows(queryset):
            handle.write(json.dumps(row, cls=DjangoJSONEncoder) + "\n")
            count += 1
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    return count


def _cell(value: object) -> object:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Decimal):  # no exponent, no trailing zeros
        text = f"{value:f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, str):
        return _neutralised(value)
    return value


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _neutralised(text: str) -> str:
    """A text cell a spreadsheet would evaluate (`=HYPERLINK(…)`, `@SUM(…)`, `-2+3`) gets a leading `'`."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text
