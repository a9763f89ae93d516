from __future__ import annotations

import os
import threading
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from pricing.quotes import PriceMode
from pricing.sources import get_price_source
from pricing.sources.bitget import BitgetSource
from pricing.sources.bybit import BybitSource
from pricing.sources.dummy import DummySource
from pricing.sources.replay import ReplaySource
from pricing.sources.simulator import SimulatorSource
from pricing.tests.conftest import recorded, stamped_now


def test_the_default_is_a_fresh_simulator_on_every_call(settings):
    settings.PRICE_SOURCE = "simulator"
    settings.PRICE_SIMULATOR_SEED = 5

    first, second = get_price_source(), get_price_source()

    assert isinstance(first, SimulatorSource) and first is not second
    assert first.get_quote("BTCUSDT").last == second.get_quote("BTCUSDT").last


def test_the_dummy_exchange_uses_the_price_mode(settings):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "dummy"
    settings.PRICE_MODE = "ask"

    source = get_price_source()

    assert isinstance(source, DummySource) and source.mode is PriceMode.ASK


def test_bybit_is_built_from_its_settings_and_reused(settings):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "bybit"
    settings.PRICE_MODE = "mark"
    settings.BYBIT_BASE_URL = "https://api-testnet.bybit.com"
    settings.BYBIT_CATEGORY = "spot"
    settings.PRICE_HTTP_TIMEOUT = 1.5
    settings.PRICE_MAX_AGE_SEC = 12.0

    source = get_price_source()

    assert isinstance(source, BybitSource)
    assert (source.base_url, source.category, source.timeout, source.max_age_sec, source.mode) == (
        "https://api-testnet.bybit.com",
        "spot",
        1.5,
        12.0,
        PriceMode.MARK,
    )
    assert get_price_source() is source
    assert get_price_source().session is source.session


def test_changed_settings_build_a_new_source(settings):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "bybit"
    first = get_price_source()

    settings.BYBIT_CATEGORY = "spot"
    second = get_price_source()

    assert second is not first and second.category == "spot"


def test_another_thread_gets_its_own_source(settings):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "bitget"
    mine = get_price_source()
    theirs = []

    thread = threading.Thread(target=lambda: theirs.append(get_price_source()))
    thread.start()
    thread.join()

    assert isinstance(theirs[0], BitgetSource) and theirs[0] is not mine


def test_bitget_is_built_from_its_settings(settings):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "bitget"
    settings.BITGET_BASE_URL = "http://127.0.0.1:8999/"
    settings.BITGET_PRODUCT = "spot"

    source = get_price_source()

    assert isinstance(source, BitgetSource)
    assert (source.base_url, source.product) == ("http://127.0.0.1:8999", "spot")


def test_the_configured_exchange_source_quotes_through_the_real_clock(settings, http):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "bitget"
    settings.BITGET_BASE_URL = "https://bitget.test"
    http.get("https://bitget.test/api/v2/mix/market/ticker", json=stamped_now(recorded("bitget_mix_ticker_BTCUSDT")))

    assert get_price_source().get_quote("BTCUSDT").mark == Decimal("104812.6")


def test_replay_reads_the_configured_file_on_a_running_clock(settings, tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text("ts,symbol,bid,ask,last,mark\n2025-06-19T11:00:00Z,BTCUSDT,1,3,2,\n")
    settings.PRICE_SOURCE = "replay"
    settings.REPLAY_FILE = str(path)
    settings.PRICE_MODE = "mid"

    source = get_price_source()

    assert isinstance(source, ReplaySource) and source.realtime
    assert source.get_quote("BTCUSDT").last == Decimal("2")
    assert get_price_source() is source


def test_a_rewritten_replay_file_is_loaded_again(settings, tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text("ts,symbol,last\n2025-06-19T11:00:00Z,BTCUSDT,2\n")
    settings.PRICE_SOURCE = "replay"
    settings.REPLAY_FILE = str(path)
    first = get_price_source()

    path.write_text("ts,symbol,last\n2025-06-19T11:00:00Z,BTCUSDT,3\n")
    os.utime(path, ns=(1, 1))

    assert get_price_source() is not first
    assert get_price_source().get_quote("BTCUSDT").last == Decimal("3")


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "REPLAY_FILE: .*missing.csv"), ("ts,symbol\n", "REPLAY_FILE: .*no quotes recorded")],
)
def test_a_bad_replay_file_is_a_configuration_error_naming_the_key(settings, tmp_path, content, message):
    path = tmp_path / "missing.csv"
    if content is not None:
        path.write_text(content)
    settings.PRICE_SOURCE = "replay"
    settings.REPLAY_FILE = str(path)

    with pytest.raises(ImproperlyConfigured, match=message):
        get_price_source()


def test_replay_without_a_file_is_a_configuration_error(settings):
    settings.PRICE_SOURCE = "replay"
    settings.REPLAY_FILE = ""

    with pytest.raises(ImproperlyConfigured, match="REPLAY_FILE"):
        get_price_source()
