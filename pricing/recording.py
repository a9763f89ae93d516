"""Record quotes from any price source into a replay file (see pricing.sources.replay for the format)."""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import IO

from pricing.quotes import PriceQuote, QuoteError
from pricing.sources.base import PriceSource
from pricing.sources.replay import COLUMNS

FORMATS = (".csv", ".jsonl")


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def quote_record(quote: PriceQuote) -> dict[str, str]:
    """One file row for `quote`: ISO 8601 UTC time (ms), prices as exact decimal strings, "" for none."""
    return {
        "ts": quote.ts.astimezone(UTC).isoformat(timespec="milliseconds"),
        "symbol": quote.symbol,
        "bid": _cell(quote.bid),
        "ask": _cell(quote.ask),
        "last": _cell(quote.last),
        "mark": _cell(quote.mark),
    }


class QuoteFileWriter:
    """Writes quote rows as CSV or JSONL (by the file's extension), flushed after every batch."""

    def __init__(self, handle: IO[str], fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; use .csv or .jsonl")
        self.handle = handle
        self.fmt = fmt
        self.rows = 0
        self._csv = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n") if fmt == ".csv" else None
        if self._csv:
            self._csv.writeheader()

    def write(self, quotes: list[PriceQuote]) -> None:
        for quote in quotes:
            record = quote_record(quote)
            if self._csv:
                self._csv.writerow(record)
            else:
                self.handle.write(json.dumps(record) + "\n")
            self.rows += 1
        self.handle.flush()


@dataclass
class Sample:
    number: int
    total: int
    quotes: list[PriceQuote]
    errors: list[QuoteError]


@dataclass
class RecordResult:
    samples: int = 0
    rows: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # symbol → failed samples


def sample_count(duration: float, interval: float) -> int:
    """Samples at 0, interval, 2×interval, … strictly inside `duration`; at least one."""
    return max(1, math.ceil(round(duration / interval, 9)))


def record_quotes(
    *,
    source: PriceSource,
    symbols: list[str],
    samples: int,
    interval: float,
    writer: QuoteFileWriter,
    on_sample: Callable[[Sample], None] | None = None,
    sleep: Callable[[float], None] | None = None,
    monotonic: Callable[[], float] | None = None,
) -> RecordResult:
    """Take `samples` batches of quotes, one every `interval` seconds (fixed rate), and write them."""
    sleep = sleep or time.sleep
    monotonic = monotonic or time.monotonic
    result = RecordResult()
    started = monotonic()
    for number in range(1, samples + 1):
        answers = source.get_quotes(symbols)
        quotes = [answer for answer in answers.values() if isinstance(answer, PriceQuote)]
        errors = [answer for answer in answers.values() if isinstance(answer, QuoteError)]
        writer.write(quotes)
        for error in errors:
            result.failures[error.symbol] = result.failures.get(error.symbol, 0) + 1
        result.samples += 1
        result.rows += len(quotes)
        if on_sample:
            on_sample(Sample(number, samples, quotes, errors))
        if number < samples:
            sleep(max(0.0, started + number * interval - monotonic()))
    return result


def open_output(path: Path, *, overwrite: bool) -> tuple[IO[str], str]:
    fmt = path.suffix.lower()
    if fmt not in FORMATS:
        raise ValueError(f"{path}: unknown format {fmt or '(no extension)'}; use .csv or .jsonl")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", newline="", encoding="utf-8"), fmt
