from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from pricing import recording
from pricing.sources.replay import ReplaySource
from pricing.tests.conftest import recorded, stamped_now, with_symbols


@pytest.fixture
def no_sleep(monkeypatch):
    naps: list[float] = []
    monkeypatch.setattr(recording.time, "sleep", naps.append)
    return naps


@pytest.fixture
def dummy(settings):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "dummy"
    return settings


def record(*args: str) -> str:
    out = StringIO()
    call_command("record_quotes", *args, stdout=out)
    return out.getvalue()


def test_it_records_a_csv_file_with_progress(dummy, tmp_path, no_sleep):
    out = tmp_path / "q.csv"

    output = record("--symbols", "btcusdt, ETHUSDT", "--duration", "3", "--interval", "1", "--out", str(out))

    lines = out.read_text().splitlines()
    assert lines[0] == "ts,symbol,bid,ask,last,mark"
    assert len(lines) == 1 + 3 * 2
    assert lines[1].endswith(",BTCUSDT,99.95,100.05,100.00,100.00")
    assert "[1/3] 2 quotes" in output and "[3/3] 2 quotes" in output
    assert "Wrote 6 rows (3 samples)" in output
    assert len(no_sleep) == 2


def test_a_recorded_jsonl_file_replays(dummy, tmp_path, no_sleep):
    out = tmp_path / "q.jsonl"

    record("--symbols", "BTCUSDT", "--duration", "1", "--out", str(out))

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["symbol"] for row in rows] == ["BTCUSDT"]
    assert ReplaySource(out).get_quote("BTCUSDT").ask == Decimal("100.05")


def test_each_sample_is_one_request_and_failures_are_reported(settings, tmp_path, http, no_sleep):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "bybit"
    settings.BYBIT_BASE_URL = "https://bybit.test"
    settings.BYBIT_CATEGORY = "spot"
    body = stamped_now(with_symbols(recorded("bybit_spot_tickers_BTCUSDT"), ["BTCUSDT"]))
    for _ in range(2):
        http.get("https://bybit.test/v5/market/tickers", json=body)
    out = tmp_path / "q.csv"

    output = record("--symbols", "BTCUSDT,ETHUSDT", "--duration", "1", "--interval", "0.5", "--out", str(out))

    assert len(http.calls) == 2
    assert out.read_text().splitlines()[1].endswith(",BTCUSDT,104823.49,104823.62,104823.62,")
    assert "[1/2] 1 quotes, failed: ETHUSDT: symbol missing from the bybit answer" in output
    assert "Failed quotes: ETHUSDT ×2" in output


def test_it_samples_at_a_fixed_rate():
    clock = [0.0]
    naps: list[float] = []

    class Slow:
        def get_quotes(self, symbols):
            clock[0] += 0.3  # each request takes 0.3 s
            return {}

    def sleep(seconds):
        naps.append(round(seconds, 6))
        clock[0] += seconds

    result = recording.record_quotes(
        source=Slow(),
        symbols=["BTCUSDT"],
        samples=3,
        interval=1.0,
        writer=recording.QuoteFileWriter(StringIO(), ".csv"),
        sleep=sleep,
        monotonic=lambda: clock[0],
    )

    assert naps == [0.7, 0.7]
    assert result.samples == 3


@pytest.mark.parametrize(("duration", "interval", "expected"), [(60, 1, 60), (2.5, 1, 3), (0.7, 0.1, 7), (0.2, 1, 1)])
def test_the_sample_count_covers_the_duration(duration, interval, expected):
    assert recording.sample_count(duration, interval) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbols", "BTCUSDT", "--out", "q.txt"], "unknown format .txt"),
        (["--symbols", " , ", "--out", "q.csv"], "at least one symbol"),
        (["--symbols", "BTCUSDT", "--duration", "0", "--out", "q.csv"], "greater than 0"),
        (["--symbols", "BTCUSDT", "--interval", "-1", "--out", "q.csv"], "greater than 0"),
    ],
)
def test_bad_arguments_are_command_errors(dummy, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)

    with pytest.raises(CommandError, match=message):
        record(*args)


def test_an_existing_file_is_kept_unless_overwrite_is_given(dummy, tmp_path, no_sleep):
    out = tmp_path / "q.csv"
    out.write_text("precious\n")

    with pytest.raises(CommandError, match="--overwrite"):
        record("--symbols", "BTCUSDT", "--duration", "1", "--out", str(out))
    assert out.read_text() == "precious\n"

    record("--symbols", "BTCUSDT", "--duration", "1", "--out", str(out), "--overwrite")
    assert out.read_text().startswith("ts,symbol")
