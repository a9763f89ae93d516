from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from responses import matchers

from pricing.tests.conftest import recorded, stamped_now, with_symbols

BYBIT = "https://bybit.test/v5/market/tickers"


def price_check(*args: str) -> str:
    out = StringIO()
    call_command("price_check", *args, stdout=out)
    return out.getvalue()


def failing_price_check(*args: str) -> tuple[str, CommandError]:
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("price_check", *args, stdout=out)
    return out.getvalue(), caught.value


@pytest.fixture
def bybit(settings):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "bybit"
    settings.BYBIT_BASE_URL = "https://bybit.test"
    settings.BYBIT_CATEGORY = "linear"
    return settings


def test_it_shows_source_client_mode_and_quote_of_the_dummy_exchange(settings):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "dummy"
    settings.PRICE_MODE = "bid"

    output = price_check("ethusdt")

    assert "source:  exchange / dummy" in output
    assert "client:  dummy" in output
    assert "mode:    bid" in output
    assert "ETHUSDT: bid 99.95  ask 100.05  last 100.00  mark 100.00  → bid 99.95" in output


def test_it_quotes_btcusdt_when_no_symbol_is_given(settings):
    settings.PRICE_SOURCE = "simulator"

    assert "BTCUSDT: bid" in price_check()


def test_it_shows_the_exchange_url_and_exact_prices(bybit, http):
    http.get(BYBIT, json=stamped_now(recorded("bybit_linear_tickers_BTCUSDT")))

    output = price_check("BTCUSDT", "--mode", "mark")

    assert "client:  bybit linear https://bybit.test/v5/market/tickers" in output
    assert "timeout: 5s, max quote age 30s" in output
    assert "mode:    mark" in output
    assert "BTCUSDT: bid 104815.20  ask 104815.30  last 104815.30  mark 104816.87  → mark 104816.87" in output


def test_several_symbols_take_one_request_and_a_missing_one_fails_the_command(bybit, http):
    body = stamped_now(with_symbols(recorded("bybit_linear_tickers_BTCUSDT"), ["BTCUSDT", "ETHUSDT"]))
    http.get(BYBIT, json=body, match=[matchers.query_param_matcher({"category": "linear"})])

    output, error = failing_price_check("BTCUSDT", "ETHUSDT", "NOPEUSDT")

    assert len(http.calls) == 1
    assert "ETHUSDT: bid 104815.20" in output
    assert "NOPEUSDT: ERROR symbol missing from the bybit answer" in output
    assert str(error) == "1 of 3 quotes failed"


def test_mark_mode_on_spot_fails_the_command_clearly(bybit, http):
    bybit.BYBIT_CATEGORY = "spot"
    http.get(BYBIT, json=stamped_now(recorded("bybit_spot_tickers_BTCUSDT")))

    output, error = failing_price_check("BTCUSDT", "--mode", "mark")

    assert "BTCUSDT: ERROR price mode 'mark' not available from bybit" in output
    assert str(error) == "1 of 1 quotes failed"


def test_an_unreachable_exchange_fails_the_command(bybit, http):
    output, error = failing_price_check("BTCUSDT")

    assert "BTCUSDT: ERROR connection error" in output
    assert "1 of 1" in str(error)


def test_a_replay_source_shows_its_file_and_recorded_quote(settings, tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("ts,symbol,bid,ask,last,mark\n2025-06-19T11:00:00Z,BTCUSDT,1,3,2,\n")
    settings.PRICE_SOURCE = "replay"
    settings.REPLAY_FILE = str(path)

    output = price_check("BTCUSDT")

    assert f"client:  replay {path}" in output
    assert "BTCUSDT: bid 1  ask 3  last 2  mark -  → last 2  (ts 2025-06-19T11:00:00+00:00, age " in output
