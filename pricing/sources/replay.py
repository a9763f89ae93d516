"""Quotes replayed from a recorded file, on a clock the caller controls.

File format (what `manage.py record_quotes` writes), chosen by the file extension:

- `.csv`: a header row `ts,symbol,bid,ask,last,mark` (column order free, extra columns ignored),
  then one row per quote.
- `.jsonl`: one JSON object per line with the same keys; blank lines are skipped.

`ts` is an ISO 8601 time (`2025-06-19T11:23:30.415+00:00`; without an offset it is UTC) or epoch
milliseconds. `symbol` is upper-cased. `bid`, `ask`, `last` and `mark` are decimal numbers
(strings or JSON numbers); empty or null means the recording had no such price (e.g. `mark` from
a spot ticker) and the quote carries None, so a price mode that needs it fails as it would live.
Rows need not be sorted. A malformed file (bad `ts`, missing `symbol`, a price that is not a
number) is rejected when loaded, naming the line; a zero or negative recorded price is kept and
fails as a quote, like a bad exchange answer would.

The replay time (`now`) starts at the first recorded `ts` (or `start`). With `realtime=False`
it moves only through `set_now`, `advance` and `step` (deterministic what-if runs); with
`realtime=True` it also moves with the wall clock from the moment the source was created, or from
`anchor` (a wall-clock time in epoch seconds) when given. `PRICE_SOURCE=replay` passes the anchor
of `shared_replay_anchor()`: the wall-clock time the replay of this file started, stored once in
`DATA_DIR/replay-anchor.json`, so every process and thread (web workers, the auto-close loop and
its successor) sees the same replay time and no recorded segment is skipped or replayed twice at a
hand-over. The quote for a symbol is its latest row at or before `now`;
a symbol with no row yet, or whose latest row is older than `max_age_sec`, is a failed quote.
"""

from __future__ import annotations

import bisect
import csv
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pricing.quotes import PriceMode, PriceQuote, QuoteError
from pricing.sources.base import PerSymbolBatchMixin, check_fresh, parse_price

COLUMNS = ("ts", "symbol", "bid", "ask", "last", "mark")
PRICE_COLUMNS = ("bid", "ask", "last", "mark")


class ReplayFileError(ValueError):
    """The recorded file cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class ReplayRow:
    ts: datetime
    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    mark: Decimal | None


def parse_ts(raw: object) -> datetime:
    """An aware datetime from ISO 8601 (naive = UTC) or epoch milliseconds."""
    if isinstance(raw, bool) or raw is None:
        raise ValueError(f"ts is not a time: {raw!r}")
    if isinstance(raw, int | float):
        return datetime.fromtimestamp(raw / 1000, tz=UTC)
    text = str(raw).strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"ts is not ISO 8601 or epoch ms: {text[:40]!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _price(raw: object, column: str) -> Decimal | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError(f"{column} is not a number: {raw!r}")
    try:
        return Decimal(str(raw).strip())
    except InvalidOperation:
        raise ValueError(f"{column} is not a number: {str(raw)[:40]!r}") from None


def _row(record: dict, where: str) -> ReplayRow:
    try:
        symbol = str(record.get("symbol") or "").strip().upper()
        if not symbol:
            raise ValueError("symbol is missing")
        prices = {column: _price(record.get(column), column) for column in PRICE_COLUMNS}
        return ReplayRow(ts=parse_ts(record.get("ts")), symbol=symbol, **prices)
    except ValueError as exc:
        raise ReplayFileError(f"{where}: {exc}") from None


def read_rows(path: Path | str) -> list[ReplayRow]:
    """Every row of a recorded CSV or JSONL file, sorted by time (stable for equal times)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise ReplayFileError(f"{path}: unknown format {suffix or '(no extension)'}; use .csv or .jsonl")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(_read_csv(handle, path) if suffix == ".csv" else _read_jsonl(handle, path))
    except OSError as exc:
        raise ReplayFileError(f"{path}: {exc.strerror or exc}") from None
    rows.sort(key=lambda row: row.ts)
    return rows


def _read_csv(handle, path: Path) -> Iterator[ReplayRow]:
    reader = csv.DictReader(handle)
    missing = [column for column in ("ts", "symbol") if column not in (reader.fieldnames or [])]
    if missing:
        raise ReplayFileError(f"{path}: CSV header lacks {', '.join(missing)} (expected {','.join(COLUMNS)})")
    for record in reader:
        yield _row(record, f"{path}:{reader.line_num}")


def _read_jsonl(handle, path: Path) -> Iterator[ReplayRow]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_float=str)  # keep the recorded digits exactly
        except ValueError:
            raise ReplayFileError(f"{path}:{number}: not JSON") from None
        if not isinstance(record, dict):
            raise ReplayFileError(f"{path}:{number}: not a JSON object")
        yield _row(record, f"{path}:{number}")


class ReplaySource(PerSymbolBatchMixin):
    """The latest recorded quote at or before the replay time `now`."""

    name = "replay"

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        rows: Iterable[ReplayRow] | None = None,
        mode: PriceMode = PriceMode.LAST,
        max_age_sec: float | None = None,
        start: datetime | None = None,
        realtime: bool = False,
        anchor: float | None = None,
    ) -> None:
        if (path is None) == (rows is None):
            raise ValueError("give either a file path or rows")
        self.path = Path(path) if path is not None else None
        loaded = read_rows(path) if path is not None else sorted(rows or [], key=lambda row: row.ts)
        if not loaded:
            raise ReplayFileError(f"{self.path or 'rows'}: no quotes recorded")
        self.mode = mode
        self.max_age_sec = max_age_sec
        self.realtime = realtime
        self._times_by_symbol: dict[str, list[datetime]] = {}
        self._rows_by_symbol: dict[str, list[ReplayRow]] = {}
        for row in loaded:
            self._times_by_symbol.setdefault(row.symbol, []).append(row.ts)
            self._rows_by_symbol.setdefault(row.symbol, []).append(row)
        self._times = sorted({row.ts for row in loaded})
        self._base = start or self._times[0]
        self._started = time.monotonic()
        self._anchor = anchor  # wall-clock seconds at which the replay time was `_base` (shared)

    # --- the clock --------------------------------------------------------------------------------
    @property
    def start(self) -> datetime:
        return self._times[0]

    @property
    def end(self) -> datetime:
        return self._times[-1]

    @property
    def symbols(self) -> list[str]:
        return sorted(self._rows_by_symbol)

    @property
    def now(self) -> datetime:
        if self.realtime:
            if self._anchor is not None:
                return self._base + timedelta(seconds=time.time() - self._anchor)
            return self._base + timedelta(seconds=time.monotonic() - self._started)
        return self._base

    def set_now(self, when: datetime) -> None:
        self._base = when
        self._started = time.monotonic()
        if self._anchor is not None:  # moved by hand: this source leaves the shared clock
            self._anchor = time.time()

    def advance(self, seconds: float | timedelta) -> datetime:
        step = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        self.set_now(self.now + step)
        return self.now

    def times(self) -> list[datetime]:
        """Every distinct recorded time, in order: the instants a what-if run steps through."""
        return list(self._times)

    def step(self) -> datetime | None:
        """Move `now` to the next recorded time after it; None (and no move) past the end."""
        index = bisect.bisect_right(self._times, self.now)
        if index >= len(self._times):
            return None
        self.set_now(self._times[index])
        return self.now

    def describe(self) -> str:
        span = f"{self.start.isoformat()} → {self.end.isoformat()}"
        return f"replay {self.path or '(rows)'} {span}, now {self.now.isoformat()}"

    # --- the PriceSource protocol -----------------------------------------------------------------
    def get_quote(self, symbol: str) -> PriceQuote:
        now = self.now
        key = symbol.upper()
        times = self._times_by_symbol.get(key)
        if not times:
            raise QuoteError(symbol, "symbol not in the replay file")
        index = bisect.bisect_right(times, now) - 1
        if index < 0:
            raise QuoteError(symbol, f"no recorded quote at or before {now.isoformat()}")
        row = self._rows_by_symbol[key][index]
        quote = PriceQuote(
            symbol=symbol,
            ts=row.ts,
            bid=parse_price(symbol, "bid", row.bid, required=False),
            ask=parse_price(symbol, "ask", row.ask, required=False),
            last=parse_price(symbol, "last", row.last, required=False),
            mark=parse_price(symbol, "mark", row.mark, required=False),
            source=self.name,
            mode=self.mode,
        )
        return check_fresh(quote, now=now, max_age_sec=self.max_age_sec)


ANCHOR_FILE = "replay-anchor.json"


def shared_replay_anchor(path: Path | str, directory: Path | str) -> float:
    """The wall-clock time (epoch seconds) at which the replay of `path` started on this host.

    Stored at first use in `directory/replay-anchor.json` (under an exclusive lock, so processes
    starting together agree) for this file's path and modification time: every later source, in
    any process or thread, continues the same replay; a re-recorded file starts a new one.
    """
    path = Path(path).resolve()
    try:
        mtime_ns = path.stat().st_mtime_ns
    except OSError as exc:
        raise ReplayFileError(f"{path}: {exc.strerror or exc}") from None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    anchor_file = directory / ANCHOR_FILE
    with open(directory / (ANCHOR_FILE + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            saved = json.loads(anchor_file.read_text(encoding="utf-8"))
            if saved.get("file") == str(path) and saved.get("mtime_ns") == mtime_ns:
                return float(saved["started_at"])
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            pass  # none yet, or unreadable: start the replay now
        started_at = time.time()
        partial = directory / (ANCHOR_FILE + ".partial")
        partial.write_text(
            json.dumps({"file": str(path), "mtime_ns": mtime_ns, "started_at": started_at}), encoding="utf-8"
        )
        os.replace(partial, anchor_file)
        return started_at
