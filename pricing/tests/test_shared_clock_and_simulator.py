"""One replay clock for the whole service; the simulator quotes each symbol around its own price.

Before: each thread and process built its replay source with its own start, so when the auto-close
loop handed over to its successor (another worker) the replay time jumped back or forward and a
recorded price segment was never seen; and the simulator quoted every symbol around 100, so an ETH
short entered at 2000 closed at 107 for +1 893.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from oms.tests.factories import open_position
from pricing.sources import build_price_source, get_price_source
from pricing.sources import replay as replay_module
from pricing.sources.replay import ANCHOR_FILE, shared_replay_anchor

T0 = datetime(2025, 6, 19, 11, 0, 0, tzinfo=UTC)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def replay_file(settings, tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text(
        "ts,symbol,last\n"
        + "".join(f"{(T0 + timedelta(seconds=s)).isoformat()},BTCUSDT,{100 + s}\n" for s in range(0, 30))
    )
    settings.PRICE_SOURCE = "replay"
    settings.REPLAY_FILE = str(path)
    settings.DATA_DIR = tmp_path / "data"
    settings.PRICE_MAX_AGE_SEC = None
    return path


@pytest.fixture
def wall(monkeypatch):
    """One fake clock for both the wall clock and the monotonic clock."""
    now = [1_000_000.0]
    monkeypatch.setattr(replay_module.time, "time", lambda: now[0])
    monkeypatch.setattr(replay_module.time, "monotonic", lambda: now[0])
    return now


def test_sources_built_at_different_times_share_one_replay_clock(replay_file, wall):
    first = build_price_source()  # e.g. the auto-close loop in one worker
    wall[0] += 5
    successor = build_price_source()  # the loop's successor, in another worker, 5 s later
    wall[0] += 5
    assert first.now == T0 + timedelta(seconds=10)
    assert successor.now == first.now  # before: T0 + 5 s, the successor replayed 5 s over again
    assert successor.get_quote("BTCUSDT").last == first.get_quote("BTCUSDT").last == Decimal("110")


def test_threads_of_one_process_share_the_clock_too(replay_file, wall):
    import threading

    mine = get_price_source()
    wall[0] += 3
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(get_price_source()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine and theirs[0].now == mine.now == T0 + timedelta(seconds=3)


def test_another_process_continues_the_same_replay(replay_file, settings):
    started = shared_replay_anchor(replay_file, settings.DATA_DIR)
    code = (
        "import sys; from pricing.sources.replay import shared_replay_anchor; "
        "print(repr(shared_replay_anchor(sys.argv[1], sys.argv[2])))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, str(replay_file), str(settings.DATA_DIR)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert float(other.stdout) == started
    saved = json.loads((settings.DATA_DIR / ANCHOR_FILE).read_text())
    assert saved["file"] == str(replay_file.resolve()) and saved["started_at"] == started


def test_a_re_recorded_file_starts_a_new_replay(replay_file, settings, wall):
    first = shared_replay_anchor(replay_file, settings.DATA_DIR)
    wall[0] += 60
    assert shared_replay_anchor(replay_file, settings.DATA_DIR) == first
    os.utime(replay_file, ns=(1, 1))  # rewritten
    assert shared_replay_anchor(replay_file, settings.DATA_DIR) == first + 60


# --- the simulator --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_simulator_quotes_each_symbol_around_its_own_first_entry_price(settings):
    settings.PRICE_SOURCE = "simulator"
    settings.PRICE_SIMULATOR_SEED = 9
    open_position(symbol="ETHUSDT", side="short", entry="2000", tp="1910", sl="2030")
    open_position(symbol="ETHUSDT", side="long", entry="2500", tp="2600", sl="2400")  # not the first
    open_position(symbol="PEPEUSDT", entry="0.00001234", tp="0.000013", sl="0.000012")
    source = get_price_source()
    for _ in range(100):
        quotes = source.get_quotes(["ETHUSDT", "PEPEUSDT", "NEWUSDT"])
        eth, pepe, new = quotes["ETHUSDT"], quotes["PEPEUSDT"], quotes["NEWUSDT"]
        assert Decimal("1800") <= eth.last <= Decimal("2200")  # before: around 100
        assert eth.bid < eth.last < eth.ask and eth.ask - eth.bid == Decimal("0.4")
        assert Decimal("0.0000111") <= pepe.last <= Decimal("0.0000136") and pepe.bid > 0
        assert Decimal("90") <= new.last <= Decimal("110")  # never traded: around 100 as before


@pytest.mark.django_db
def test_the_simulator_looks_the_bases_up_once_per_batch(settings, django_assert_max_num_queries):
    settings.PRICE_SOURCE = "simulator"
    for n in range(5):
        open_position(symbol=f"S{n}USDT", entry=str(1000 * (n + 1)))
    with django_assert_max_num_queries(2):
        quotes = get_price_source().get_quotes([f"S{n}USDT" for n in range(5)])
    assert all(Decimal(900 * (n + 1)) <= quotes[f"S{n}USDT"].last <= Decimal(1100 * (n + 1)) for n in range(5))
