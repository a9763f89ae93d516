"""Partial exits on paper: the defects a red-team pass found, each test failed before its fix."""

from __future__ import annotations

from decimal import Decimal

import pytest

from oms.models import Position, PositionStatus
from oms.selectors import book_stats, position_stats
from oms.services.closing import CloseInstruction, close_positions
from oms.services.operator_audit import Operator
from oms.services.settle import position_settle
from oms.tests.factories import open_position
from oms.tests.test_settle import DELISTED, prices  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


def test_a_position_with_partial_exits_cannot_be_voided_its_realised_pnl_would_be_lost(prices, settings):  # noqa: F811
    from oms.exceptions import SettleRefused

    settings.PAPER_FEE_RATE, settings.PAPER_SLIPPAGE_BPS = Decimal("0.001"), Decimal("0")
    position = open_position(symbol=DELISTED, entry="100", qty="2", fee=Decimal("0.2"))
    close_positions([CloseInstruction(position.pk, Decimal("110"), "tp1", fraction=Decimal("0.5"))])  # +10 gross
    with pytest.raises(SettleRefused, match="partial exits") as refused:
        position_settle(position_id=position.pk, price=None, void=True, operator=Operator("olga", "api", reason="gone"))
    assert refused.value.code == "partially_closed"
    position.refresh_from_db()
    assert position.status == PositionStatus.OPEN and position.qty == Decimal("1")
    # closed at a price the operator enters instead, the trade keeps what TP1 realised
    position_settle(
        position_id=position.pk, price=Decimal("100"), void=False, operator=Operator("olga", "api", reason="gone")
    )
    stats, from_scratch = book_stats({}), position_stats(Position.objects.all())
    assert (
        stats["total_pnl"]
        == from_scratch["total_pnl"]
        == Decimal("10") - Decimal("0.2") - Decimal("0.11") - Decimal("0.1")
    )


def test_the_exit_replay_walk_books_tp1s_partial_exit(settings):
    from datetime import UTC, datetime, timedelta

    from django.utils import timezone

    from oms.exits import ExitParams
    from oms.services.exit_report import exit_replay_walk
    from pricing.sources.replay import ReplayRow, ReplaySource

    settings.PAPER_FEE_RATE, settings.PAPER_SLIPPAGE_BPS = Decimal("0"), Decimal("0")
    position = open_position(
        entry="100",
        qty="2",
        tp="110",
        sl="98",
        exit_strategy="tp_scale_out",
        created_at=timezone.now() - timedelta(days=1),
    )
    start = datetime(2025, 6, 19, 10, tzinfo=UTC)
    rows = [
        ReplayRow(start, "BTCUSDT", None, None, Decimal("101.5"), None),  # TP1: half closes at 101.5 (+1.5)
        ReplayRow(start + timedelta(seconds=1), "BTCUSDT", None, None, Decimal("100"), None),  # break-even stop
    ]
    params = ExitParams(trailing_activation_pct=Decimal("5"), tp1_pct=Decimal("1"), tp1_fraction=Decimal("0.5"))
    [outcome] = exit_replay_walk([position], source=ReplaySource(rows=rows), params=params)
    assert outcome.action == "close"
    assert outcome.pnl == Decimal("1.5")


def test_winning_scale_out_trades_stopped_at_break_even_do_not_trip_the_consecutive_stop_loss_limit(settings):
    from oms.services.switch import switch_state
    from oms.services.trips import trips_check
    from oms.tests.test_sweep import aged, sweep

    settings.PAPER_FEE_RATE, settings.PAPER_SLIPPAGE_BPS = Decimal("0"), Decimal("0")
    settings.TP1_PCT, settings.TP1_FRACTION, settings.TRAILING_ACTIVATION_PCT = (
        Decimal("1"),
        Decimal("0.5"),
        Decimal("5"),
    )
    settings.MAX_CONSECUTIVE_SL = 2
    assert switch_state().switch_on
    for symbol in ("BTCUSDT", "ETHUSDT"):
        position = aged(symbol=symbol, entry="100", qty="2", tp="110", sl="98", exit_strategy="tp_scale_out")
        sweep({symbol: "101.5"})  # TP1
        sweep({symbol: "100"})  # the rest at break-even
        position.refresh_from_db()
        assert position.status == PositionStatus.CLOSED and position.pnl == Decimal("1.5")
    assert trips_check() is None  # as the close's on-commit hook runs it
    assert switch_state().switch_on, switch_state().reason
    assert book_stats({})["sl_count"] == 0


def test_funding_settled_before_a_partial_exit_is_paid_on_what_was_held_then():
    from datetime import timedelta

    from django.utils import timezone

    from oms.services.funding import position_funding_book
    from pricing.funding import FundingEvent

    now = timezone.now()
    funding_time = now - timedelta(minutes=10)
    position = open_position(entry="100", qty="2", created_at=now - timedelta(hours=1))
    # the partial exit happens after the funding time, before the funding run booked it
    close_positions(
        [CloseInstruction(position.pk, Decimal("100"), "signal", fraction=Decimal("0.5"))],
        now=now - timedelta(minutes=5),
    )
    payment = position_funding_book(
        position_id=position.pk,
        event=FundingEvent("BTCUSDT", funding_time, Decimal("0.001")),
        price=Decimal("100"),
        now=now,
    )
    assert payment.qty == Decimal("2")  # held at the funding time
    assert payment.amount == Decimal("0.2")


def test_the_admin_return_on_notional_counts_the_whole_size_after_partial_exits(settings):
    from django.contrib.admin.sites import site

    settings.PAPER_FEE_RATE, settings.PAPER_SLIPPAGE_BPS = Decimal("0"), Decimal("0")
    position = open_position(entry="100", qty="2")
    close_positions([CloseInstruction(position.pk, Decimal("110"), "tp1", fraction=Decimal("0.5"))])
    close_positions([CloseInstruction(position.pk, Decimal("110"), "tp")])
    position.refresh_from_db()
    assert position.pnl == Decimal("20")  # +10 % on 200 USDT
    assert site._registry[Position].return_pct(position) == "10.000 %"


def test_a_stop_moved_after_the_sweep_read_the_row_is_never_loosened_by_tp1(settings):
    position = open_position(entry="100", qty="2", sl="98", exit_strategy="tp_scale_out")
    Position.objects.filter(pk=position.pk).update(sl_price=Decimal("100.5"))  # moved after the sweep read 98
    levels = {"sl_price": Decimal("100"), "dynamic_sl_price": Decimal("100"), "exit_meta": {"tp1_done": True}}
    close_positions([CloseInstruction(position.pk, Decimal("101"), "tp1", levels, fraction=Decimal("0.5"))])
    position.refresh_from_db()
    assert position.qty == Decimal("1") and position.sl_price == Decimal("100.5")
    assert position.exit_meta == {"tp1_done": True}
