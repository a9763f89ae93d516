from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from pricing.quotes import PriceMode, PriceQuote, QuoteError, select_price
from pricing.recording import QuoteFileWriter, record_quotes
from pricing.sources import replay as replay_module
from pricing.sources.replay import ReplayFileError, ReplaySource, read_rows
from pricing.sources.simulator import SimulatorSource

T0 = datetime(2025, 6, 19, 11, 0, 0, tzinfo=UTC)
CSV = """ts,symbol,bid,ask,last,mark
2025-06-19T11:00:00+00:00,BTCUSDT,99.9,100.1,100.0,
2025-06-19T11:00:00+00:00,ETHUSDT,9.9,10.1,10.0,10.05
2025-06-19T11:00:01.500+00:00,BTCUSDT,101.9,102.1,102.0,
2025-06-19T11:00:03Z,BTCUSDT,103.9,104.1,104.0,
2025-06-19T11:00:02,ETHUSDT,10.9,11.1,11.0,11.05
"""


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text(CSV)
    return path


def test_the_quote_is_the_latest_row_at_or_before_the_replay_time(csv_file):
    source = ReplaySource(csv_file)

    assert source.now == T0
    assert source.get_quote("BTCUSDT").last == Decimal("100.0")
    source.set_now(T0 + timedelta(seconds=1.4))
    assert source.get_quote("BTCUSDT").last == Decimal("100.0")
    source.set_now(T0 + timedelta(seconds=1.5))
    assert source.get_quote("BTCUSDT").last == Decimal("102.0")
    source.advance(10)
    assert source.get_quote("BTCUSDT").last == Decimal("104.0")
    assert source.get_quote("ETHUSDT").mark == Decimal("11.05")


def test_a_replayed_quote_keeps_the_recorded_values_and_time(csv_file):
    quote = ReplaySource(csv_file, mode=PriceMode.BID).get_quote("ethusdt")

    assert quote == PriceQuote(
        symbol="ethusdt",
        ts=T0,
        bid=Decimal("9.9"),
        ask=Decimal("10.1"),
        last=Decimal("10.0"),
        mark=Decimal("10.05"),
        source="replay",
        mode=PriceMode.BID,
    )


def test_an_empty_recorded_price_is_none_and_its_mode_fails(csv_file):
    quote = ReplaySource(csv_file).get_quote("BTCUSDT")

    assert quote.mark is None
    with pytest.raises(QuoteError, match="mark"):
        select_price(quote, PriceMode.MARK)


def test_step_walks_through_every_recorded_time_then_stops(csv_file):
    source = ReplaySource(csv_file)

    visited = [source.now]
    while (moment := source.step()) is not None:
        visited.append(moment)

    assert visited == [T0, T0 + timedelta(seconds=1.5), T0 + timedelta(seconds=2), T0 + timedelta(seconds=3)]
    assert source.times() == visited
    assert source.now == source.end


def test_a_symbol_before_its_first_row_or_absent_is_a_failed_quote(csv_file):
    source = ReplaySource(csv_file, start=T0 - timedelta(seconds=1))

    with pytest.raises(QuoteError, match="no recorded quote"):
        source.get_quote("BTCUSDT")
    with pytest.raises(QuoteError, match="not in the replay file"):
        source.get_quote("SOLUSDT")


def test_a_row_older_than_the_maximum_age_is_a_stale_quote(csv_file):
    source = ReplaySource(csv_file, max_age_sec=5)
    source.set_now(T0 + timedelta(seconds=8))

    assert source.get_quote("BTCUSDT").last == Decimal("104.0")
    source.advance(1)
    with pytest.raises(QuoteError, match="stale"):
        source.get_quote("BTCUSDT")


def test_a_recorded_zero_price_replays_as_a_failed_quote(tmp_path):
    path = tmp_path / "zero.csv"
    path.write_text("ts,symbol,bid,ask,last,mark\n2025-06-19T11:00:00Z,BTCUSDT,99,101,0,\n")

    with pytest.raises(QuoteError, match="last is not positive"):
        ReplaySource(path).get_quote("BTCUSDT")


def test_jsonl_replays_like_csv_and_accepts_epoch_milliseconds_and_numbers(tmp_path):
    path = tmp_path / "quotes.jsonl"
    lines = [
        {"ts": int(T0.timestamp() * 1000), "symbol": "BTCUSDT", "bid": 99.9, "last": "100", "mark": None},
        {"ts": "2025-06-19T11:00:02+00:00", "symbol": "BTCUSDT", "bid": "1", "ask": "2", "last": 1.5, "mark": ""},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    source = ReplaySource(path)

    first = source.get_quote("BTCUSDT")
    source.step()
    second = source.get_quote("BTCUSDT")

    assert (first.ts, first.bid, first.mark) == (T0, Decimal("99.9"), None)
    assert (second.last, second.mark) == (Decimal("1.5"), None)


def test_unsorted_rows_are_replayed_in_time_order(tmp_path):
    path = tmp_path / "unsorted.csv"
    path.write_text("symbol,ts,last\nBTCUSDT,2025-06-19T11:00:05Z,105\nBTCUSDT,2025-06-19T11:00:00Z,100\n")
    source = ReplaySource(path)

    assert source.get_quote("BTCUSDT").last == Decimal("100")
    source.step()
    assert source.get_quote("BTCUSDT").last == Decimal("105")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.csv", "ts,symbol,last\nyesterday,BTCUSDT,1\n", "bad.csv:2: ts is not ISO 8601"),
        ("bad.csv", "ts,symbol,last\n2025-06-19T11:00:00Z,,1\n", "bad.csv:2: symbol is missing"),
        ("bad.csv", "ts,symbol,last\n2025-06-19T11:00:00Z,BTCUSDT,1\n2025-06-19T11:00:01Z,X,y\n", "bad.csv:3: last"),
        ("bad.csv", "time,pair,last\n1,BTCUSDT,1\n", "header lacks ts, symbol"),
        ("bad.csv", "ts,symbol,last\n", "no quotes recorded"),
        ("bad.jsonl", '{"ts": "2025-06-19T11:00:00Z", "symbol": "BTCUSDT"}\n{oops\n', "bad.jsonl:2: not JSON"),
        ("bad.jsonl", "[1, 2]\n", "bad.jsonl:1: not a JSON object"),
        ("bad.txt", "ts,symbol\n", "unknown format .txt"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)

    with pytest.raises(ReplayFileError, match=message):
        ReplaySource(path)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ReplayFileError, match="nope.csv"):
        read_rows(tmp_path / "nope.csv")


def test_the_realtime_clock_moves_with_the_wall_clock(csv_file, monkeypatch):
    wall = [1000.0]
    monkeypatch.setattr(replay_module.time, "monotonic", lambda: wall[0])
    source = ReplaySource(csv_file, realtime=True)

    assert source.get_quote("BTCUSDT").last == Decimal("100.0")
    wall[0] += 2.0
    assert source.now == T0 + timedelta(seconds=2)
    assert source.get_quote("BTCUSDT").last == Decimal("102.0")
    source.advance(1)
    wall[0] += 0.5
    assert source.now == T0 + timedelta(seconds=3.5)


def test_batches_answer_every_symbol_at_the_replay_time(csv_file):
    source = ReplaySource(csv_file, start=T0 + timedelta(seconds=2))

    quotes = source.get_quotes(["BTCUSDT", "ETHUSDT", "XRPUSDT"])

    assert quotes["BTCUSDT"].last == Decimal("102.0")
    assert quotes["ETHUSDT"].last == Decimal("11.0")
    assert isinstance(quotes["XRPUSDT"], QuoteError)


def first_touch(source: ReplaySource, symbol: str, tp: Decimal, sl: Decimal) -> tuple[str, datetime, Decimal] | None:
    """A toy long exit rule stepped over a recording: which level is touched first, when, at what price."""
    while True:
        price = select_price(source.get_quote(symbol))
        if price >= tp or price <= sl:
            return ("tp" if price >= tp else "sl", source.now, price)
        if source.step() is None:
            return None


def test_recorded_quotes_replay_an_exit_rule_deterministically(tmp_path):
    path = tmp_path / "sim.jsonl"
    recorder = SimulatorSource(seed=11)
    clock = iter(T0 + timedelta(seconds=n) for n in range(1000))
    stamped = _Restamped(recorder, clock)
    with path.open("w") as handle:
        record_quotes(
            source=stamped,
            symbols=["BTCUSDT"],
            samples=200,
            interval=0,
            writer=QuoteFileWriter(handle, ".jsonl"),
            sleep=lambda seconds: None,
        )

    runs = [first_touch(ReplaySource(path), "BTCUSDT", Decimal("108"), Decimal("92")) for _ in range(2)]

    assert runs[0] is not None
    assert runs[0] == runs[1]


class _Restamped:
    """The simulator with quote times from a fake clock, so recordings are one second apart."""

    name = "restamped"

    def __init__(self, source, clock) -> None:
        self.source = source
        self.clock = clock

    def get_quotes(self, symbols):
        now = next(self.clock)
        return {
            symbol: PriceQuote(**{**quote.__dict__, "ts": now})
            for symbol, quote in self.source.get_quotes(symbols).items()
        }


def test_record_then_replay_gives_back_the_exact_quotes(tmp_path):
    quotes = [
        PriceQuote("BTCUSDT", T0, Decimal("104815.20"), Decimal("104815.30"), Decimal("104815.30"), None, "bybit"),
        PriceQuote("ETHUSDT", T0, Decimal("2512.01"), Decimal("2512.02"), Decimal("2512.015"), Decimal("2512.1"), "x"),
    ]
    for suffix in (".csv", ".jsonl"):
        buffer = io.StringIO()
        QuoteFileWriter(buffer, suffix).write(quotes)
        path = tmp_path / f"round{suffix}"
        path.write_text(buffer.getvalue())

        source = ReplaySource(path)
        replayed = [source.get_quote(q.symbol) for q in quotes]

        assert [(q.ts, q.bid, q.ask, q.last, q.mark) for q in replayed] == [
            (q.ts, q.bid, q.ask, q.last, q.mark) for q in quotes
        ]
