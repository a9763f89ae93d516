"""The API's JSON parser: DRF's strict one (no NaN/Infinity literals), plus a nesting limit.

Python's decoder raises RecursionError (not ValueError) on arrays or objects nested about 1000
deep, and anything that walks a body nested hundreds deep (validation, storage, the audit line)
can hit the same limit later. Both become a ParseError, i.e. a 400, here.
"""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_JSON_DEPTH = 32  # a signal is flat; a few levels of free-form metadata are plenty


def json_depth(value: object) -> int:
    """How deeply arrays and objects nest in `value` (0 for a scalar); iterative, so never a RecursionError."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest


class JSONParser(parsers.JSONParser):
    strict = True

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.") from None
        if json_depth(data) > MAX_JSON_DEPTH:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.")
        return data
