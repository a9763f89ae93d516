"""Exit policies: pure functions that decide, from a position's values and the current price,
whether it closes (and why) or how its dynamic levels move. No database access here.

`max_favorable_move` is the best move in the position's favour since entry, in percent of the
entry price. `exit_meta` keeps what the trailing stop needs to continue exactly where it stopped
(the best price, the trailing parameters it started with, when it activated).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from pricing.quotes import PriceQuote

HUNDRED = Decimal("100")
LEVEL_QUANTUM = Decimal("1e-10")  # the precision of price columns (decimal_places=10)


class ExitPosition(Protocol):
    """The values a policy reads (a Position instance, or any object with these attributes)."""

    side: str
    entry_price: Decimal
    tp_price: Decimal | None
    sl_price: Decimal | None
    created_at: datetime
    exit_meta: dict


@dataclass(frozen=True)
class ExitContext:
    price: Decimal  # the price selected from `quote` with PRICE_MODE
    quote: PriceQuote | None
    now: datetime


@dataclass(frozen=True)
class ExitParams:
    trailing_activation_pct: Decimal = Decimal("1.0")
    trailing_distance_pct: Decimal = Decimal("0.5")
    max_holding_min: int | None = None
    tp1_pct: Decimal = Decimal("1.0")
    tp1_fraction: Decimal = Decimal("0.5")

    @classmethod
    def from_settings(cls) -> ExitParams:
        from django.conf import settings

        return cls(
            trailing_activation_pct=settings.TRAILING_ACTIVATION_PCT,
            trailing_distance_pct=settings.TRAILING_DISTANCE_PCT,
            max_holding_min=settings.MAX_HOLDING_MIN,
            tp1_pct=settings.TP1_PCT,
            tp1_fraction=settings.TP1_FRACTION,
        )


class ExitActionType(StrEnum):
    CLOSE_POSITION = "close_position"
    PARTIAL_CLOSE = "partial_close"
    UPDATE_LEVELS = "update_levels"


@dataclass(frozen=True)
class ExitAction:
    type: ExitActionType
    reason: str = ""  # CLOSE_POSITION: tp, sl, trailing_sl, timeout; PARTIAL_CLOSE: tp1
    fraction: Decimal | None = None  # PARTIAL_CLOSE: the share of the open quantity
    sl_price: Decimal | None = None  # UPDATE_LEVELS: a new static stop (tp_scale_out's break-even), or None
    dynamic_tp_price: Decimal | None = None  # UPDATE_LEVELS: the new values of the four columns
    dynamic_sl_price: Decimal | None = None
    max_favorable_move: Decimal | None = None
    exit_meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def close(cls, reason: str) -> ExitAction:
        return cls(ExitActionType.CLOSE_POSITION, reason=reason)

    @property
    def level_fields(self) -> dict[str, Any]:
        fields = {
            "dynamic_tp_price": self.dynamic_tp_price,
            "dynamic_sl_price": self.dynamic_sl_price,
            "max_favorable_move": self.max_favorable_move,
            "exit_meta": self.exit_meta,
        }
        if self.sl_price is not None:
            fields["sl_price"] = self.sl_price
        return fields


def _q(value: Decimal) -> Decimal:
    return value.quantize(LEVEL_QUANTUM)


def _tp_sl_hit(side: str, price: Decimal, tp: Decimal | None, sl: Decimal | None) -> str | None:
    if side == "long":
        if tp is not None and price >= tp:
            return "tp"
        if sl is not None and price <= sl:
            return "sl"
    else:
        if tp is not None and price <= tp:
            return "tp"
        if sl is not None and price >= sl:
            return "sl"
    return None


def timeout_hit(position: ExitPosition, ctx: ExitContext, params: ExitParams) -> bool:
    return params.max_holding_min is not None and ctx.now - position.created_at >= timedelta(
        minutes=params.max_holding_min
    )


def tp_sl_static(position: ExitPosition, ctx: ExitContext, params: ExitParams) -> list[ExitAction]:
    """The old behaviour: close at the take profit or the stop loss; then the holding time limit."""
    reason = _tp_sl_hit(position.side, ctx.price, position.tp_price, position.sl_price)
    if reason is None and timeout_hit(position, ctx, params):
        reason = "timeout"
    return [ExitAction.close(reason)] if reason else []


@dataclass(frozen=True)
class _Trail:
    """Where trailing v1 stands at this price: its stop and the levels to store when they changed."""

    stop: Decimal | None
    trailing: bool  # the stop is the trail (tighter than the static stop)
    move_pct: Decimal  # the best move in favour since entry, in percent (max_favorable_move)
    update: ExitAction | None  # UPDATE_LEVELS when the best price or the activation changed


def _trail(position: ExitPosition, ctx: ExitContext, params: ExitParams) -> _Trail:
    meta = dict(position.exit_meta or {})
    long = position.side == "long"
    entry = position.entry_price
    activation = Decimal(meta.get("activation_pct", params.trailing_activation_pct))
    distance = Decimal(meta.get("distance_pct", params.trailing_distance_pct))
    previous_best = Decimal(meta["best_price"]) if "best_price" in meta else None

    best = previous_best if previous_best is not None else entry
    best = max(best, ctx.price) if long else min(best, ctx.price)
    move_pct = ((best - entry) if long else (entry - best)) / entry * HUNDRED
    activated = bool(meta.get("activated")) or move_pct >= activation

    stop = position.sl_price
    trailing = False
    if activated:
        trail = _q(best * (1 - distance / HUNDRED)) if long else _q(best * (1 + distance / HUNDRED))
        if stop is None or (trail > stop if long else trail < stop):
            stop, trailing = trail, True

    update = None
    if previous_best is None or best != previous_best or activated != bool(meta.get("activated")):
        new_meta = {
            **meta,
            "best_price": str(best),
            "activation_pct": str(activation),
            "distance_pct": str(distance),
            "activated": activated,
        }
        if activated and not meta.get("activated"):
            new_meta["activated_at"] = ctx.now.isoformat()
            new_meta["activated_price"] = str(ctx.price)
        update = ExitAction(
            ExitActionType.UPDATE_LEVELS,
            dynamic_tp_price=position.tp_price,
            dynamic_sl_price=stop,
            max_favorable_move=_q(move_pct),
            exit_meta=new_meta,
        )
    return _Trail(stop=stop, trailing=trailing, move_pct=_q(move_pct), update=update)


def tp_sl_trailing_v1(position: ExitPosition, ctx: ExitContext, params: ExitParams) -> list[ExitAction]:
    """Static TP/SL until the price has moved `activation` % in favour; from then on the stop
    trails the best price seen by `distance` % (it only ever tightens, never below the static SL).

    Returns an UPDATE_LEVELS action whenever the best price or the activation changes (and on the
    first evaluation), followed by a CLOSE_POSITION when a level is hit.
    """
    state = _trail(position, ctx, params)
    actions = [state.update] if state.update else []
    long = position.side == "long"
    reason = None
    if position.tp_price is not None and (ctx.price >= position.tp_price if long else ctx.price <= position.tp_price):
        reason = "tp"
    elif state.stop is not None and (ctx.price <= state.stop if long else ctx.price >= state.stop):
        reason = "trailing_sl" if state.trailing else "sl"
    elif timeout_hit(position, ctx, params):
        reason = "timeout"
    if reason:
        actions.append(ExitAction.close(reason))
    return actions


def tp_scale_out(position: ExitPosition, ctx: ExitContext, params: ExitParams) -> list[ExitAction]:
    """Trailing stop v1, plus a first take profit: when the price first reaches `tp1_pct` % in
    favour, close `tp1_fraction` of the position and move the stop to break-even (the entry price;
    never loosened, never below the trail); the rest runs to the take profit (TP2) or the trailing
    stop, and a stop hit at break-even after TP1 closes with reason `break_even` (not a stop-loss:
    the trade has won on TP1). A close decided by trailing v1 at the same price (TP2, the stop, the
    timeout) wins over TP1. A TP1 the exchange can never take (`tp1_skipped`) leaves trailing v1."""
    actions = tp_sl_trailing_v1(position, ctx, params)
    meta = position.exit_meta or {}
    close = close_action(actions)
    if meta.get("tp1_done") or meta.get("tp1_skipped"):
        if meta.get("tp1_done") and close is not None and close.reason == "sl":
            actions = [a for a in actions if a is not close] + [ExitAction.close("break_even")]
        return actions
    if close is not None:
        return actions
    long = position.side == "long"
    entry = position.entry_price
    tp1 = _q(entry * (1 + params.tp1_pct / HUNDRED)) if long else _q(entry * (1 - params.tp1_pct / HUNDRED))
    if not (ctx.price >= tp1 if long else ctx.price <= tp1):
        return actions
    state = _trail(position, ctx, params)
    stop = position.sl_price
    break_even = entry if stop is None or (entry > stop if long else entry < stop) else stop
    trailing_stop = state.stop
    if trailing_stop is None or (break_even > trailing_stop if long else break_even < trailing_stop):
        trailing_stop = break_even
    new_meta = {
        **(state.update.exit_meta if state.update else meta),
        "tp1_done": True,
        "tp1_price": str(tp1),
        "tp1_at": ctx.now.isoformat(),
        "tp1_fraction": str(params.tp1_fraction),
    }
    return [
        ExitAction(
            ExitActionType.UPDATE_LEVELS,
            sl_price=break_even,
            dynamic_tp_price=position.tp_price,
            dynamic_sl_price=trailing_stop,
            max_favorable_move=state.move_pct,
            exit_meta=new_meta,
        ),
        ExitAction(ExitActionType.PARTIAL_CLOSE, reason="tp1", fraction=params.tp1_fraction),
    ]


Policy = Callable[[ExitPosition, ExitContext, ExitParams], list[ExitAction]]

POLICIES: dict[str, Policy] = {
    "tp_sl_static": tp_sl_static,
    "tp_sl_trailing_v1": tp_sl_trailing_v1,
    "tp_scale_out": tp_scale_out,
}


def policy_for(exit_strategy: str) -> Policy:
    """The policy of a position's `exit_strategy`; an unknown name falls back to static TP/SL."""
    return POLICIES.get(exit_strategy or "", tp_sl_static)


def evaluate_exit(position: ExitPosition, exit_strategy: str, ctx: ExitContext, params: ExitParams) -> list[ExitAction]:
    return policy_for(exit_strategy)(position, ctx, params)


def close_action(actions: list[ExitAction]) -> ExitAction | None:
    return next((a for a in actions if a.type is ExitActionType.CLOSE_POSITION), None)


def partial_close_action(actions: list[ExitAction]) -> ExitAction | None:
    return next((a for a in actions if a.type is ExitActionType.PARTIAL_CLOSE), None)


def level_update(actions: list[ExitAction]) -> ExitAction | None:
    return next((a for a in actions if a.type is ExitActionType.UPDATE_LEVELS), None)
