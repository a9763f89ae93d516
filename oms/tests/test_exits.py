"""Exit policies are pure: exact levels and decisions for given values."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from oms.exits import (
    ExitActionType,
    ExitContext,
    ExitParams,
    close_action,
    evaluate_exit,
    level_update,
    policy_for,
    tp_sl_static,
    tp_sl_trailing_v1,
)

T0 = datetime(2025, 6, 19, 10, 0, tzinfo=UTC)
PARAMS = ExitParams(trailing_activation_pct=D("1"), trailing_distance_pct=D("0.5"), max_holding_min=None)


@dataclass
class Pos:
    side: str = "long"
    entry_price: D = D("100")
    tp_price: D | None = None
    sl_price: D | None = None
    created_at: datetime = T0
    exit_meta: dict = field(default_factory=dict)


def ctx(price: str, minutes: float = 1) -> ExitContext:
    return ExitContext(price=D(price), quote=None, now=T0 + timedelta(minutes=minutes))


def step(position: Pos, price: str, params: ExitParams = PARAMS, minutes: float = 1):
    """Evaluate the trailing policy and carry its level update into the next state."""
    actions = tp_sl_trailing_v1(position, ctx(price, minutes), params)
    update = level_update(actions)
    if update:
        position = replace(position, exit_meta=update.exit_meta)
    return position, update, close_action(actions)


@pytest.mark.parametrize(
    ("side", "tp", "sl", "price", "reason"),
    [
        ("long", "104.5", "98.5", "104.5", "tp"),
        ("long", "104.5", "98.5", "110", "tp"),
        ("long", "104.5", "98.5", "98.5", "sl"),
        ("long", "104.5", "98.5", "104.49", None),
        ("long", "104.5", "98.5", "98.51", None),
        ("short", "95.5", "101.5", "95.5", "tp"),
        ("short", "95.5", "101.5", "101.5", "sl"),
        ("short", "95.5", "101.5", "95.51", None),
        ("short", "95.5", "101.5", "101.49", None),
        ("long", None, None, "1", None),
    ],
)
def test_static_policy_closes_at_take_profit_or_stop_loss_mirrored_for_shorts(side, tp, sl, price, reason):
    position = Pos(side=side, tp_price=D(tp) if tp else None, sl_price=D(sl) if sl else None)
    actions = tp_sl_static(position, ctx(price), PARAMS)
    assert (close_action(actions).reason if actions else None) == reason
    assert level_update(actions) is None


def test_trailing_long_pins_every_level_until_the_trailing_stop_closes_it():
    position = Pos(side="long", sl_price=D("98"))

    position, update, close = step(position, "100.5")  # 0.5 % in favour: not active yet
    assert close is None
    assert (update.dynamic_sl_price, update.max_favorable_move) == (D("98"), D("0.5000000000"))
    assert update.exit_meta["activated"] is False and update.exit_meta["best_price"] == "100.5"

    position, update, close = step(position, "101")  # 1 %: trailing starts 0.5 % under the best
    assert close is None
    assert update.dynamic_sl_price == D("100.4950000000")
    assert update.max_favorable_move == D("1.0000000000")
    assert update.exit_meta["activated"] is True and update.exit_meta["activated_price"] == "101"

    position, update, close = step(position, "102")
    assert (update.dynamic_sl_price, update.max_favorable_move, close) == (D("101.4900000000"), D("2.0000000000"), None)

    position, update, close = step(position, "101.6")  # below the best, above the stop: nothing changes
    assert (update, close) == (None, None)

    position, update, close = step(position, "101.49")
    assert update is None
    assert close.reason == "trailing_sl"


def test_trailing_short_pins_every_level_until_the_trailing_stop_closes_it():
    position = Pos(side="short", sl_price=D("102"))

    position, update, close = step(position, "99")
    assert update.dynamic_sl_price == D("99.4950000000")
    assert update.max_favorable_move == D("1.0000000000")
    assert close is None

    position, update, close = step(position, "98")
    assert (update.dynamic_sl_price, update.max_favorable_move) == (D("98.4900000000"), D("2.0000000000"))

    position, update, close = step(position, "98.48")  # above the best, under the stop: nothing changes
    assert (update, close) == (None, None)

    position, update, close = step(position, "97.5")
    assert (update.dynamic_sl_price, update.max_favorable_move) == (D("97.9875000000"), D("2.5000000000"))

    position, update, close = step(position, "97.98")
    assert (update, close) == (None, None)

    position, update, close = step(position, "97.9875")
    assert close.reason == "trailing_sl"


def test_trailing_stop_never_loosens_below_a_tighter_static_stop_loss():
    position = Pos(side="long", sl_price=D("100.8"))
    position, update, close = step(position, "101")  # trail 100.495 would be looser than 100.8
    assert update.dynamic_sl_price == D("100.8")
    position, update, close = step(position, "100.8")
    assert close.reason == "sl"


def test_trailing_take_profit_still_applies_when_configured():
    position = Pos(side="long", tp_price=D("103"), sl_price=D("98"))
    position, update, close = step(position, "102")
    assert update.dynamic_tp_price == D("103") and close is None
    position, update, close = step(position, "103.2")
    assert close.reason == "tp"


def test_trailing_before_activation_uses_the_static_stop_loss():
    position = Pos(side="long", sl_price=D("98.5"))
    position, update, close = step(position, "98.5")
    assert update.dynamic_sl_price == D("98.5") and update.exit_meta["activated"] is False
    assert close.reason == "sl"


def test_trailing_keeps_the_parameters_it_started_with():
    position = Pos(side="long")
    position, update, _ = step(position, "101")
    assert update.dynamic_sl_price == D("100.4950000000")
    wider = ExitParams(trailing_activation_pct=D("5"), trailing_distance_pct=D("3"))
    position, update, _ = step(position, "102", params=wider)
    assert update.dynamic_sl_price == D("101.4900000000")
    assert update.exit_meta["distance_pct"] == "0.5"


@pytest.mark.parametrize("policy", [tp_sl_static, tp_sl_trailing_v1])
@pytest.mark.parametrize("side", ["long", "short"])
def test_max_holding_time_closes_with_reason_timeout_exactly_at_the_limit(policy, side):
    params = replace(PARAMS, max_holding_min=60)
    tp, sl = (D("110"), D("90")) if side == "long" else (D("90"), D("110"))
    position = Pos(side=side, tp_price=tp, sl_price=sl)
    assert close_action(policy(position, ctx("100", minutes=59.99), params)) is None
    assert close_action(policy(position, ctx("100", minutes=60), params)).reason == "timeout"


def test_a_price_exit_wins_over_the_timeout_at_the_same_moment():
    params = replace(PARAMS, max_holding_min=1)
    position = Pos(side="long", tp_price=D("101"), sl_price=D("99"))
    assert close_action(tp_sl_static(position, ctx("101", minutes=5), params)).reason == "tp"


def test_without_max_holding_time_a_position_never_times_out():
    position = Pos(side="long")
    assert tp_sl_static(position, ctx("100", minutes=10**6), PARAMS) == []


def test_policy_is_chosen_by_exit_strategy_with_static_as_fallback():
    assert policy_for("tp_sl_trailing_v1") is tp_sl_trailing_v1
    assert policy_for("tp_sl_static") is tp_sl_static
    assert policy_for("") is tp_sl_static
    actions = evaluate_exit(Pos(sl_price=D("99")), "tp_sl_trailing_v1", ctx("99"), PARAMS)
    assert [a.type for a in actions] == [ExitActionType.UPDATE_LEVELS, ExitActionType.CLOSE_POSITION]
