"""`manage.py exit_engine_report`: the summary and the read-only policy replays."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from oms.models import Order, Position
from oms.tests.factories import closed_position, open_position

pytestmark = pytest.mark.django_db


def report(*args: str) -> str:
    out = StringIO()
    call_command("exit_engine_report", *args, stdout=out)
    return out.getvalue()


def test_summary_counts_positions_by_status_reason_and_exit_strategy():
    open_position(exit_strategy="tp_sl_trailing_v1")
    closed_position(pnl="4.5", reason="tp")
    closed_position(pnl="-1.5", reason="sl")
    closed_position(pnl="-1", reason="sl")
    text = report()
    assert "  closed              3" in text and "  open                1" in text
    assert "  sl                  2  pnl -2.5" in text and "  tp                  1  pnl 4.5" in text
    assert "  tp_sl_static       open      0  closed      3  pnl 2" in text
    assert "  tp_sl_trailing_v1  open      1  closed      0  pnl -" in text


def test_hit_tp_and_hit_sl_scenarios_print_what_each_open_position_would_do_without_closing_it():
    long = open_position(side="long", tp="104.5", sl="98.5", qty="2")
    short = open_position(side="short", tp="95.5", sl="101.5", symbol="ETHUSDT")
    text = report("--replay", "--hit-tp")
    assert f"#{long.pk} BTCUSDT long entry 100 tp 104.5 sl 98.5 [tp_sl_static]: CLOSE tp @ 104.5 pnl 9" in text
    assert f"#{short.pk} ETHUSDT short" in text and "CLOSE tp @ 95.5 pnl 4.5" in text
    assert "Would close 2 of 2." in text
    text = report("--replay", "--hit-sl")
    assert "CLOSE sl @ 98.5 pnl -3" in text and "CLOSE sl @ 101.5 pnl -1.5" in text
    assert (
        set(Position.objects.values_list("status", flat=True)) == {"open"}
        and not Order.objects.filter(purpose="exit").exists()
    )


def test_hit_sl_uses_the_trailing_stop_once_it_has_moved():
    position = open_position(
        side="long",
        tp=None,
        sl="98",
        exit_strategy="tp_sl_trailing_v1",
        dynamic_sl_price=D("101.49"),
        exit_meta={"best_price": "102", "activated": True, "activation_pct": "1", "distance_pct": "0.5"},
    )
    text = report("--replay", "--hit-sl")
    assert f"#{position.pk} " in text and "CLOSE trailing_sl @ 101.49 pnl 1.49" in text


def test_replay_on_the_live_quote_uses_the_configured_source(settings):
    settings.PRICE_SOURCE, settings.PRICE_EXCHANGE = "exchange", "dummy"  # fixed last price 100
    open_position(entry="99", tp="99.5", sl="90")
    open_position(tp="110", sl="90", symbol="ETHUSDT")
    text = report("--replay")
    assert "Replay: live quote (exchange, last), 2 open position(s)" in text
    assert "CLOSE tp @ 100 pnl 1" in text and ": hold at 100" in text and "Would close 1 of 2." in text


def test_replay_on_a_recorded_quote_and_a_walk_through_the_file(tmp_path):
    quotes = tmp_path / "quotes.csv"
    quotes.write_text(
        "ts,symbol,bid,ask,last,mark\n"
        "2025-06-19T10:00:00Z,BTCUSDT,,,101,\n"
        "2025-06-19T10:00:01Z,BTCUSDT,,,102,\n"
        "2025-06-19T10:00:02Z,BTCUSDT,,,101.4,\n"
        "2025-06-19T10:00:03Z,BTCUSDT,,,97,\n"
    )
    open_position(
        side="long", tp=None, sl="98", exit_strategy="tp_sl_trailing_v1", created_at=timezone.now() - timedelta(days=1)
    )
    text = report("--replay", "--quotes", str(quotes), "--at", "2025-06-19T10:00:01Z")
    assert "update at 102 (stop 101.49, best move 2 %)" in text
    text = report("--replay", "--quotes", str(quotes), "--walk")
    assert "CLOSE trailing_sl @ 101.4 pnl 1.4 at 2025-06-19 10:00:02" in text  # not the later 97
    text = report("--replay", "--quotes", str(quotes), "--policy", "tp_sl_static")
    assert "[tp_sl_static]: CLOSE sl @ 97 pnl -3" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hit-tp"], "need --replay"),
        (["--replay", "--walk"], "need --quotes"),
        (["--replay", "--quotes", "/nonexistent.csv"], "nonexistent"),
        (["--replay", "--limit", "0"], "--limit"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(args, message):
    with pytest.raises(CommandError, match=message):
        report(*args)
