"""The exit-engine report: how positions ended, and what open positions would do (read-only)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone

from oms.exits import ExitContext, ExitParams, close_action, evaluate_exit, level_update, partial_close_action
from oms.models import Position, PositionStatus
from oms.services.closing import CloseInstruction, close_values, partial_exit_values
from pricing.quotes import PriceMode, QuoteError, select_price
from pricing.sources.base import PriceSource


def exit_engine_summary() -> dict[str, list[dict]]:
    """Counts and PnL by status, by close reason and by exit strategy (database aggregation)."""
    closed = Q(status=PositionStatus.CLOSED)
    by_status = list(Position.objects.order_by().values("status").annotate(count=Count("id")).order_by("status"))
    by_reason = list(
        Position.objects.filter(closed)
        .order_by()
        .values("auto_close_reason")
        .annotate(count=Count("id"), pnl=Sum("pnl"))
        .order_by("-count", "auto_close_reason")
    )
    by_strategy = list(
        Position.objects.order_by()
        .values("exit_strategy")
        .annotate(
            open=Count("id", filter=Q(status=PositionStatus.OPEN)),
            closed=Count("id", filter=closed),
            pnl=Sum("pnl", filter=closed),
        )
        .order_by("exit_strategy")
    )
    return {"by_status": by_status, "by_reason": by_reason, "by_strategy": by_strategy}


@dataclass(frozen=True)
class ReplayOutcome:
    """What one open position would do at one price. `action`: close, partial (an exit of a share;
    `pnl` is what the exits made so far), update, hold or no_price."""

    position: Position
    policy: str
    action: str
    price: Decimal | None = None
    reason: str = ""
    close_price: Decimal | None = None
    pnl: Decimal | None = None
    dynamic_sl_price: Decimal | None = None
    max_favorable_move: Decimal | None = None
    at: datetime | None = None
    note: str = ""


def _evaluate(
    position: Position, policy: str, price: Decimal, quote, now: datetime, params: ExitParams
) -> tuple[ReplayOutcome, dict | None]:
    """The outcome, and the level fields the policy wants stored (None: unchanged)."""
    actions = evaluate_exit(position, policy, ExitContext(price=price, quote=quote, now=now), params)
    levels, close, partial = level_update(actions), close_action(actions), partial_close_action(actions)
    dynamic_sl = levels.dynamic_sl_price if levels else position.dynamic_sl_price
    favorable = levels.max_favorable_move if levels else position.max_favorable_move
    fields = levels.level_fields if levels else None
    if close is None and partial is not None:  # tp_scale_out's TP1: the rest stays open with its new values
        instruction = CloseInstruction(position.pk, price, partial.reason, fraction=partial.fraction)
        values, exit_price = partial_exit_values(position=position, price=price, qty=instruction.exit_qty(position.qty))
        fields = {**(fields or {}), **values}
        realized = values["realized_gross_pnl"] - values["fee"]
        outcome = ReplayOutcome(
            position, policy, "partial", price, partial.reason, exit_price, realized, dynamic_sl, favorable, now
        )
        return outcome, fields
    if close is not None:
        values = close_values(position=position, price=price, reason=close.reason, now=now)
        return ReplayOutcome(
            position,
            policy,
            "close",
            price,
            close.reason,
            values["close_price"],
            values["pnl"],
            dynamic_sl,
            favorable,
            now,
        ), fields
    return ReplayOutcome(
        position,
        policy,
        "update" if levels else "hold",
        price,
        dynamic_sl_price=dynamic_sl,
        max_favorable_move=favorable,
        at=now,
    ), fields


def scenario_price(position: Position, scenario: str) -> Decimal | None:
    """`hit_tp`: the take profit; `hit_sl`: the stop in force (the trailing stop once it moved)."""
    if scenario == "hit_tp":
        return position.tp_price
    return position.dynamic_sl_price or position.sl_price


def exit_replay(
    positions: Iterable[Position],
    *,
    scenario: str = "quote",
    source: PriceSource | None = None,
    policy: str | None = None,
    now: datetime | None = None,
    params: ExitParams | None = None,
) -> list[ReplayOutcome]:
    """Each position's policy (or `policy` for all) at the current quote of `source` (one
    get_quotes call), or at its own take profit / stop loss (`hit_tp` / `hit_sl`). Writes nothing."""
    positions = list(positions)
    now = now or timezone.now()
    params = params or ExitParams.from_settings()
    quotes: dict = {}
    if scenario == "quote" and positions:
        if source is None:
            raise ValueError("a quote replay needs a price source")
        quotes = source.get_quotes(dict.fromkeys(p.symbol for p in positions))
    outcomes = []
    for position in positions:
        name = policy or position.exit_strategy
        if scenario == "quote":
            quote = quotes.get(position.symbol)
            try:
                if quote is None or isinstance(quote, QuoteError):
                    raise quote or QuoteError(position.symbol, "no quote returned")
                price = select_price(quote, PriceMode(settings.PRICE_MODE))
            except QuoteError as exc:
                outcomes.append(ReplayOutcome(position, name, "no_price", note=exc.reason))
                continue
        else:
            quote, price = None, scenario_price(position, scenario)
            if price is None:
                outcomes.append(ReplayOutcome(position, name, "no_price", note=f"no level for {scenario}"))
                continue
        outcomes.append(_evaluate(position, name, price, quote, now, params)[0])
    return outcomes


def exit_replay_walk(
    positions: Iterable[Position], *, source, policy: str | None = None, params: ExitParams | None = None
) -> list[ReplayOutcome]:
    """Step a replay source through every recorded time from the first: each position's first
    close, or where it stands at the end (level updates carried along in memory). Writes nothing."""
    params = params or ExitParams.from_settings()
    mode = PriceMode(settings.PRICE_MODE)
    state = {p.pk: p for p in positions}
    names = {p.pk: policy or p.exit_strategy for p in state.values()}
    final: dict[int, ReplayOutcome] = {}
    for when in source.times():
        open_ids = [pk for pk in state if pk not in final or final[pk].action != "close"]
        if not open_ids:
            break
        source.set_now(when)
        quotes = source.get_quotes(dict.fromkeys(state[pk].symbol for pk in open_ids))
        for pk in open_ids:
            position, quote = state[pk], quotes.get(state[pk].symbol)
            if quote is None or isinstance(quote, QuoteError):
                continue
            try:
                price = select_price(quote, mode)
            except QuoteError:
                continue
            final[pk], levels = _evaluate(position, names[pk], price, quote, when, params)
            if levels:
                state[pk] = replace_levels(position, levels)
    return [
        final.get(pk) or ReplayOutcome(p, names[pk], "no_price", note="no usable recorded quote")
        for pk, p in state.items()
    ]


def replace_levels(position: Position, fields: dict) -> Position:
    """A copy of `position` (not saved) with new dynamic levels."""
    copy = Position(**{f.attname: getattr(position, f.attname) for f in Position._meta.concrete_fields})
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy
