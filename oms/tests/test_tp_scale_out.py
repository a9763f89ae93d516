"""The `tp_scale_out` exit policy (issue #12 §2): TP1 closes a share, the stop moves to break-even,
the rest runs to TP2 or the trailing stop. Pure decisions first, then through the sweep."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from oms.exits import ExitActionType, ExitParams, close_action, level_update, partial_close_action, tp_scale_out
from oms.models import OrderPurpose, PositionStatus
from oms.tests.test_exits import Pos, ctx
from oms.tests.test_sweep import aged, sweep

PARAMS = ExitParams(trailing_activation_pct=D("3"), trailing_distance_pct=D("1"), tp1_pct=D("1"), tp1_fraction=D("0.5"))


def evaluate(position: Pos, price: str):
    actions = tp_scale_out(position, ctx(price), PARAMS)
    return level_update(actions), partial_close_action(actions), close_action(actions)


@pytest.mark.parametrize(
    ("side", "sl", "tp", "tp1_price"), [("long", "98", "105", "101"), ("short", "102", "95", "99")]
)
def test_tp1_closes_the_share_and_moves_the_stop_to_break_even(side, sl, tp, tp1_price):
    position = Pos(side=side, tp_price=D(tp), sl_price=D(sl))
    levels, partial, close = evaluate(position, tp1_price)
    assert close is None and partial.type is ExitActionType.PARTIAL_CLOSE
    assert (partial.reason, partial.fraction) == ("tp1", D("0.5"))
    assert levels.sl_price == D("100") == levels.dynamic_sl_price
    assert levels.exit_meta["tp1_done"] is True and levels.level_fields["sl_price"] == D("100")


def test_below_tp1_nothing_closes_and_the_stop_stays():
    levels, partial, close = evaluate(Pos(tp_price=D("105"), sl_price=D("98")), "100.99")
    assert partial is None and close is None and "sl_price" not in levels.level_fields


def test_after_tp1_it_never_scales_out_again_and_the_break_even_stop_closes_the_rest():
    position = Pos(tp_price=D("105"), sl_price=D("98"))
    levels, _, _ = evaluate(position, "101")
    position = replace(position, sl_price=levels.sl_price, exit_meta=levels.exit_meta)
    assert evaluate(position, "101.5")[1] is None
    _, partial, close = evaluate(position, "100")
    assert partial is None and close.reason == "break_even"  # a won trade, not a stop-loss


def test_a_stop_already_above_the_entry_is_never_loosened_to_break_even():
    levels, partial, _ = evaluate(Pos(tp_price=D("105"), sl_price=D("100.5"), exit_meta={}), "101")
    assert partial is not None and levels.sl_price == D("100.5")


def test_tp2_at_the_same_price_closes_everything():
    _, partial, close = evaluate(Pos(tp_price=D("101"), sl_price=D("98")), "101")
    assert partial is None and close.reason == "tp"


@pytest.mark.django_db
def test_through_the_sweep_tp1_then_the_rest_at_break_even_books_one_trade(settings):
    settings.TP1_PCT, settings.TP1_FRACTION = D("1"), D("0.5")
    settings.TRAILING_ACTIVATION_PCT = D("3")
    position = aged(entry="100", qty="2", tp="105", sl="98", exit_strategy="tp_scale_out")
    result, _ = sweep({"BTCUSDT": "101"})
    assert [p.pk for p in result.partially_closed] == [position.pk] and result.closed == []
    position.refresh_from_db()
    assert (position.status, position.qty, position.sl_price) == (PositionStatus.OPEN, D("1"), D("100"))
    assert position.realized_gross_pnl == D("1")  # (101 - 100) × 1
    sweep({"BTCUSDT": "101"})  # TP1 is done: nothing more
    position.refresh_from_db()
    assert position.qty == D("1")
    result, _ = sweep({"BTCUSDT": "100"})
    position.refresh_from_db()
    assert [p.pk for p in result.closed] == [position.pk]
    assert (position.status, position.auto_close_reason, position.pnl) == (PositionStatus.CLOSED, "break_even", D("1"))
    reasons = list(position.orders.filter(purpose=OrderPurpose.EXIT).order_by("id").values_list("close_reason", "qty"))
    assert reasons == [("tp1", D("1")), ("break_even", D("1"))]
