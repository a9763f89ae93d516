"""The shadow-mode report on a small book computed by hand."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from oms.models import AutoCloseMonitor
from oms.services.shadow import Thresholds, max_drawdown, shadow_report, wilson_interval
from oms.tests.factories import closed_position, open_position

pytestmark = pytest.mark.django_db

# (pnl, exit, strategy, symbol) in closing order, 12 h apart.
BOOK = [
    ("30", "tp", "A", "BTCUSDT"),
    ("-4", "sl", "A", "BTCUSDT"),
    ("-6", "sl", "B", "ETHUSDT"),
    ("20", "tp", "A", "ETHUSDT"),
    ("-8", "sl", "B", "BTCUSDT"),
    ("-12", "timeout", "A", "BTCUSDT"),
    ("-5", "sl", "B", "ETHUSDT"),
    ("15", "tp", "A", "BTCUSDT"),
    ("4", "manual", "B", "ETHUSDT"),
    ("-4", "sl", "A", "BTCUSDT"),
]
# Equity 30 26 20 40 32 20 15 30 34 30: the peak 40 falls to 15 → drawdown 25 = 62.5 % of the peak.
LOOSE = Thresholds(min_trades=10, min_winrate_pct=Decimal("15"), max_drawdown_usdt=Decimal("25"), max_open_age_hours=24)


@pytest.fixture
def book():
    now = timezone.now()
    start = now - timedelta(days=5)
    for n, (pnl, reason, strategy, symbol) in enumerate(BOOK):
        closed_position(
            pnl=pnl,
            reason=reason,
            strategy=strategy,
            symbol=symbol,
            closed_at=start + timedelta(hours=12 * n + 1),
            account_label="shadow-1",
        )
    # Another epoch's trade, and one closed before the period: neither counts.
    closed_position(pnl="-500", reason="sl", closed_at=now - timedelta(hours=3), account_label="old-book")
    closed_position(pnl="-500", reason="sl", closed_at=now - timedelta(days=6), account_label="shadow-1")
    return now, start


def test_the_hand_computed_book_gives_the_expected_figures(book):
    now, start = book
    report = shadow_report(since=start, epoch="shadow-1", now=now)
    m = report["metrics"]
    assert (m["closed_trades"], m["wins"], m["losses"]) == (10, 4, 6)
    assert m["winrate_pct"] == 40.0
    assert (m["winrate_ci95_low_pct"], m["winrate_ci95_high_pct"]) == (16.82, 68.73)
    assert (m["tp_count"], m["sl_count"], m["other_exit_count"]) == (3, 5, 2)
    assert m["total_pnl"] == Decimal("30")
    assert (m["gross_win"], m["gross_loss"]) == (Decimal("69"), Decimal("39"))
    assert m["profit_factor"] == Decimal(69) / Decimal(39)  # oms.metrics: no rounding of its own
    assert m["expectancy"] == Decimal("3")
    assert (m["avg_win"], m["avg_loss"]) == (Decimal("17.25"), Decimal("-6.5"))
    assert m["max_drawdown"] == Decimal("25")
    assert m["max_drawdown_pct_of_peak"] == 62.5
    assert m["longest_losing_streak"] == 3
    assert m["trades_per_day"] == 2.0  # 10 trades in 5 days


def test_the_per_strategy_table_is_computed_per_group(book):
    now, start = book
    rows = {row["strategy"]: row for row in shadow_report(since=start, epoch="shadow-1", now=now)["by_strategy"]}
    assert (rows["A"]["closed_trades"], rows["A"]["winrate_pct"], rows["A"]["total_pnl"]) == (6, 50.0, Decimal("45"))
    assert rows["A"]["profit_factor"] == Decimal("3.25") and rows["A"]["max_drawdown"] == Decimal("12")
    assert (rows["B"]["closed_trades"], rows["B"]["winrate_pct"], rows["B"]["total_pnl"]) == (4, 25.0, Decimal("-15"))
    assert rows["B"]["max_drawdown"] == Decimal("19") and rows["B"]["max_drawdown_pct_of_peak"] is None


def test_the_default_thresholds_say_no_go_and_name_the_failed_criteria(book):
    now, start = book
    report = shadow_report(since=start, epoch="shadow-1", now=now)
    assert report["verdict"] == "NO-GO"
    assert report["failed"] == ["min_trades", "winrate"]


def test_loose_thresholds_say_go(book):
    now, start = book
    report = shadow_report(since=start, epoch="shadow-1", now=now, thresholds=LOOSE)
    assert report["verdict"] == "GO" and report["failed"] == []


def test_the_winrate_must_pass_with_its_lower_bound_not_the_point_estimate(book):
    now, start = book
    strict = Thresholds(10, Decimal("17"), Decimal("25"), 24)  # 40 % point estimate, 16.82 % lower bound
    assert shadow_report(since=start, epoch="shadow-1", now=now, thresholds=strict)["failed"] == ["winrate"]


def test_a_drawdown_above_the_limit_fails(book):
    now, start = book
    tight = Thresholds(10, Decimal("15"), Decimal("24.99"), 24)
    assert shadow_report(since=start, epoch="shadow-1", now=now, thresholds=tight)["failed"] == ["max_drawdown"]


def test_an_open_position_older_than_a_day_fails_only_in_its_epoch(book):
    now, start = book
    stale = open_position(account_label="shadow-1", created_at=now - timedelta(hours=25))
    open_position(account_label="shadow-1", created_at=now - timedelta(hours=23))
    open_position(account_label="old-book", created_at=now - timedelta(days=3))
    report = shadow_report(since=start, epoch="shadow-1", now=now, thresholds=LOOSE)
    assert report["failed"] == ["stale_open_positions"]
    assert f"#{stale.pk}" in report["criteria"][3]["detail"]


def test_an_auto_close_error_in_the_period_fails_and_an_older_one_does_not(book):
    now, start = book
    AutoCloseMonitor.objects.update_or_create(
        pk=1, defaults={"errors": 1, "last_error": "boom", "last_error_at": now - timedelta(days=6)}
    )
    assert shadow_report(since=start, epoch="shadow-1", now=now, thresholds=LOOSE)["verdict"] == "GO"
    AutoCloseMonitor.objects.filter(pk=1).update(errors=2, last_error_at=now - timedelta(hours=1))
    report = shadow_report(since=start, epoch="shadow-1", now=now, thresholds=LOOSE)
    assert report["failed"] == ["autoclose_errors"] and "boom" in report["criteria"][4]["detail"]


def test_wilson_interval_matches_known_values():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and round(high, 4) == 0.2775
    low, high = wilson_interval(50, 100)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)
    assert wilson_interval(0, 0) == (0.0, 0.0)


def test_a_book_that_only_loses_has_no_drawdown_percent():
    assert max_drawdown([Decimal("-1"), Decimal("-2")]) == (Decimal("3"), None)


def test_the_command_exits_1_on_no_go_and_writes_json_and_html(book, settings, tmp_path):
    out = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command(
            "shadow_report",
            "--days",
            "5",
            "--epoch",
            "shadow-1",
            "--json",
            "--html",
            str(tmp_path / "r.html"),
            stdout=out,
        )
    assert exit_info.value.code == 1
    body = json.loads(out.getvalue())
    assert body["verdict"] == "NO-GO" and body["metrics"]["closed_trades"] == 10
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "<polyline" in page and "NO-GO" in page


def test_the_command_exits_0_on_go_and_uses_the_current_epoch(book, settings):
    from oms.services.epochs import epoch_start

    settings.SHADOW_MIN_TRADES, settings.SHADOW_MIN_WINRATE_PCT = 10, Decimal("15")
    settings.SHADOW_MAX_DRAWDOWN_USDT = Decimal("25")
    epoch_start(name="shadow-1", actor="test")
    out = StringIO()
    call_command("shadow_report", "--days", "5", stdout=out)  # no SystemExit: GO
    text = out.getvalue()
    assert "epoch shadow-1" in text and "VERDICT: GO" in text
