"""GET /stats: metrics over a small hand-computed book, filters and group_by."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from oms.selectors import position_stats, positions_filtered
from oms.tests.factories import closed_position, open_position

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
# pnl in closing order → equity 10, 5, 25, 10, 0, 5; peak 10, 10, 25, 25, 25, 25; max drawdown 25
BOOK = [
    ("10", "tp", "BTCUSDT"),
    ("-5", "sl", "ETHUSDT"),
    ("20", "tp", "BTCUSDT"),
    ("-15", "sl", "BTCUSDT"),
    ("-10", "manual", "ETHUSDT"),
    ("5", "timeout", "ETHUSDT"),
]


@pytest.fixture
def book():
    for day, (pnl, reason, symbol) in enumerate(BOOK):
        closed_position(
            pnl=pnl,
            reason=reason,
            symbol=symbol,
            closed_at=T0 + timedelta(days=day),
            created_at=T0 + timedelta(days=day, minutes=-30),
            strategy="bounce" if day % 2 else "trend",
        )
    open_position(symbol="BTCUSDT", created_at=T0 + timedelta(days=6))


def test_headline_metrics_match_the_hand_computation(anon_client, book):
    stats = anon_client.get("/stats").json()
    assert stats["total_positions"] == 7 and stats["open_positions"] == 1 and stats["closed_positions"] == 6
    assert (stats["winning_trades"], stats["losing_trades"]) == (3, 3)
    assert (stats["tp_count"], stats["sl_count"], stats["manual_count"], stats["timeout_count"]) == (2, 2, 1, 1)
    assert stats["total_pnl"] == 5.0
    assert stats["winrate"] == 50.0
    assert stats["avg_pnl_win"] == pytest.approx(35 / 3)
    assert stats["avg_pnl_loss"] == -10.0
    assert stats["profit_factor"] == pytest.approx(35 / 30)
    assert stats["expectancy"] == pytest.approx(5 / 6)
    assert stats["avg_pnl_per_trade"] == pytest.approx(5 / 6)
    assert stats["max_drawdown"] == 25.0
    # first trade opened T0-30min, last close T0+5d → 6 trades over ~5.02 days
    assert stats["trades_per_day"] == pytest.approx(6 / (5 + 30 / 1440), rel=1e-3)
    assert all(isinstance(stats[k], int | float) for k in ("total_pnl", "winrate", "max_drawdown"))


def test_drawdown_counts_from_zero_when_the_first_trade_loses():
    closed_position(pnl="-5", closed_at=T0)
    closed_position(pnl="3", closed_at=T0 + timedelta(hours=1))
    assert position_stats(positions_filtered())["max_drawdown"] == Decimal("5")


def test_empty_book_gives_zeros_not_errors(anon_client):
    stats = anon_client.get("/stats").json()
    assert stats["total_positions"] == 0 and stats["winrate"] == 0.0 and stats["max_drawdown"] == 0.0
    assert stats["profit_factor"] is None and stats["expectancy"] is None


def test_filters_narrow_the_book(anon_client, book):
    assert anon_client.get("/stats?symbol=ethusdt").json()["total_pnl"] == -10.0
    since = (T0 + timedelta(days=3, hours=-1)).isoformat()
    stats = anon_client.get("/stats", {"since": since}).json()
    assert stats["closed_positions"] == 3 and stats["total_pnl"] == -20.0


def test_group_by_symbol_gives_the_same_metrics_per_group(anon_client, book):
    body = anon_client.get("/stats?group_by=symbol").json()
    groups = {g["symbol"]: g for g in body["groups"]}
    assert groups["BTCUSDT"]["total_pnl"] == 15.0 and groups["BTCUSDT"]["open_positions"] == 1
    assert groups["BTCUSDT"]["max_drawdown"] == 15.0  # 10, 30, 15
    assert groups["ETHUSDT"]["total_pnl"] == -10.0
    assert groups["ETHUSDT"]["max_drawdown"] == 15.0  # -5, -15, -10 from a 0 peak


def test_group_by_day_groups_closed_trades_by_closing_day(anon_client, book):
    groups = anon_client.get("/stats?group_by=day").json()["groups"]
    assert [g["day"] for g in groups] == [(T0 + timedelta(days=d)).date().isoformat() for d in range(6)]
    assert [g["total_pnl"] for g in groups] == [10.0, -5.0, 20.0, -15.0, -10.0, 5.0]


@pytest.mark.parametrize("group_by", ["strategy", "exchange"])
def test_other_groupings_cover_every_closed_trade(anon_client, book, group_by):
    groups = anon_client.get(f"/stats?group_by={group_by}").json()["groups"]
    assert sum(g["closed_positions"] for g in groups) == 6


def test_bad_group_by_or_date_is_a_400(anon_client):
    assert anon_client.get("/stats?group_by=color").status_code == 400
    assert anon_client.get("/stats?since=yesterday").status_code == 400


def test_stats_are_computed_in_the_database_with_a_fixed_number_of_queries(book, django_assert_max_num_queries):
    for i in range(50):
        closed_position(pnl=str(i - 25), closed_at=T0 + timedelta(days=10, minutes=i))
    with django_assert_max_num_queries(2):
        stats = position_stats(positions_filtered())
    assert stats["closed_positions"] == 56


def test_stats_are_served_from_cache_until_a_position_opens_or_closes(anon_client, django_assert_num_queries):
    from oms.services.positions import position_close

    position = open_position(entry="90")
    assert anon_client.get("/stats").json()["open_positions"] == 1
    with django_assert_num_queries(1):  # the book version only
        assert anon_client.get("/stats").json()["open_positions"] == 1
    position_close(position=position, price=Decimal("100"), reason="manual")
    stats = anon_client.get("/stats").json()
    assert (stats["open_positions"], stats["closed_positions"], stats["total_pnl"]) == (0, 1, 10.0)


def test_a_signal_changes_the_book_version(anon_client, signal_body):
    from oms.selectors import book_version

    before = book_version()
    anon_client.post("/signals/bounce", data=signal_body(), format="json")
    assert book_version() != before


def test_stats_answer_the_equity_and_return_of_the_filtered_or_current_epoch(anon_client, settings):
    from oms.services.epochs import epoch_start

    settings.STARTING_CAPITAL_USDT = Decimal("2000")
    closed_position(pnl="100", account_label="default")
    body = anon_client.get("/stats").json()
    assert (body["epoch"], body["starting_capital"], body["equity"], body["return_pct"]) == ("default", 2000, 2100, 5)
    epoch_start(name="e2", capital=Decimal("400"), actor="test")
    assert anon_client.get("/stats").json()["equity"] == 400  # the cached answer follows the new epoch
    closed_position(pnl="-10", account_label="e2", symbol="ETHUSDT")
    body = anon_client.get("/stats").json()
    assert (body["epoch"], body["equity"], body["return_pct"], body["total_pnl"]) == ("e2", 390, -2.5, 90)
    body = anon_client.get("/stats", {"account_label": "default", "symbol": "ETHUSDT"}).json()
    assert (body["epoch"], body["equity"], body["total_pnl"]) == ("default", 2100, 0)  # the epoch's, not the symbol's
    grouped = anon_client.get("/stats", {"group_by": "symbol"}).json()
    assert set(grouped) == {"group_by", "groups"} and "equity" not in grouped["groups"][0]
