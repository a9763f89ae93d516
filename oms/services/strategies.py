"""Per-strategy control (issue #12 §5): a switch and limits for each strategy, beside the global switch.

A strategy without a `StrategyControl` row is on and has no limits of its own, so nothing changes
until an operator sets one. The opening transaction (`positions.position_open_locked`, behind the OMS
lock) asks `strategy_gate` right after the global switch (one indexed lookup, none for a position
without a strategy) and `strategy_limits_enforce` right after the global limits (one more query,
only for a strategy that sets a limit). A refusal is a `RiskLimitExceeded`: the bot sees
`risk_ok: false` and a `risk_reason` starting with `strategy_` (docs/CONTRACT.md). Exits and closes
never ask: a strategy switched off still has its open positions managed and closed.

Every change goes through `strategy_control_set` (console, API, command), which records it in the
operator audit (action `strategy`) with who, when, from where and why. The reads of the console
page and the API live here too, beside the one write, as `switch.py` keeps `switch_state`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from lomsite.jsonlog import log_event
from lomsite.rowsql import row_by
from oms.amounts import COLUMN_LIMIT, QUANT
from oms.exceptions import OmsError, RiskLimitExceeded
from oms.models import OmsControl, OperatorAction, OperatorActionKind, Position, PositionStatus, StrategyControl
from oms.services.operator_audit import Operator
from risk.strategies import (
    StrategyExposure,
    StrategyLimits,
    evaluate_strategy_limits,
    evaluate_strategy_switch,
    log_strategy_block,
)

logger = logging.getLogger("loms.oms")

MAX_NAME = 64  # Position.strategy
LIMIT_FIELDS = ("max_open_positions", "max_positions_per_day", "max_exposure_usdt")
UNCHANGED = object()  # a field `strategy_control_set` leaves as it is (None clears a limit)


class StrategyControlInvalid(OmsError):
    """A change the service refuses: no reason, a bad strategy name or a bad limit."""

    code = "invalid"


# --- The opening transaction ------------------------------------------------------------------


def _limits_of(row: StrategyControl) -> StrategyLimits:
    return StrategyLimits(
        strategy=row.strategy,
        enabled=row.enabled,
        max_open_positions=row.max_open_positions,
        max_positions_per_day=row.max_positions_per_day,
        max_exposure_usdt=row.max_exposure_usdt,
    )


def strategy_gate(strategy: str, *, symbol: str) -> StrategyLimits | None:
    """The strategy's own switch and limits (None: it has none); raise `RiskLimitExceeded` when it is
    switched off. Called behind the OMS lock, which `strategy_control_set` also takes, so a change is
    in force for every open that starts after it returns."""
    if not strategy:
        return None
    row = row_by(StrategyControl, "strategy", strategy)  # the unique index; SQL built once (lomsite/rowsql.py)
    if row is None:
        return None
    limits = _limits_of(row)
    decision = log_strategy_block(evaluate_strategy_switch(limits), symbol=symbol, strategy=strategy)
    if not decision.ok:
        raise RiskLimitExceeded(decision.reason, decision.scope)
    return limits


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def strategy_exposure(*, strategy: str, now: datetime, today: bool = True) -> StrategyExposure:
    """The strategy's open count and notional, and (with `today`) the positions it opened since 00:00 UTC."""
    day_start = _day_start(now)
    rows = Position.objects.filter(strategy=strategy)
    is_open = Q(status=PositionStatus.OPEN)
    rows = rows.filter(is_open | Q(created_at__gte=day_start)) if today else rows.filter(is_open)
    figures = rows.aggregate(
        open=Count("id", filter=is_open),
        notional=Sum(F("entry_price") * F("qty"), filter=is_open),
        today=Count("id", filter=Q(created_at__gte=day_start)),
    )
    return StrategyExposure(
        open_positions=figures["open"],
        open_notional=figures["notional"] or Decimal("0"),
        positions_today=figures["today"] if today else 0,
    )


def strategy_exposure_room(limits: StrategyLimits | None, *, now: datetime) -> Decimal | None:
    """What the strategy's own exposure limit leaves free (None: it has none), for sizing by risk."""
    if limits is None or limits.max_exposure_usdt is None:
        return None
    return limits.max_exposure_usdt - strategy_exposure(strategy=limits.strategy, now=now, today=False).open_notional


def strategy_limits_enforce(
    limits: StrategyLimits | None, *, symbol: str, entry_price: Decimal, qty: Decimal, now: datetime
) -> None:
    """Raise `RiskLimitExceeded` when the new position would break one of the strategy's own limits."""
    if limits is None or not limits.has_limits:
        return
    exposure = strategy_exposure(strategy=limits.strategy, now=now, today=limits.max_positions_per_day is not None)
    decision = evaluate_strategy_limits(limits=limits, entry_price=entry_price, qty=qty, exposure=exposure)
    log_strategy_block(decision, symbol=symbol, strategy=limits.strategy)
    if not decision.ok:
        raise RiskLimitExceeded(decision.reason, decision.scope)


# --- The one write ----------------------------------------------------------------------------


def strategy_name_clean(value: object) -> str:
    """A strategy name as positions store it: stripped, 1 to 64 characters, no control characters."""
    name = str(value if value is not None else "").strip()
    if not name:
        raise StrategyControlInvalid("a strategy name is required")
    if len(name) > MAX_NAME:
        raise StrategyControlInvalid(f"a strategy name has at most {MAX_NAME} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise StrategyControlInvalid("a strategy name has no control characters")
    return name


def _count_limit(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**31 - 1:
        raise StrategyControlInvalid(f"{field}: a whole number from 0 up, or null for no limit")
    return value


def _money_limit(field: str, value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        amount = Decimal("NaN")
    if isinstance(value, bool) or not amount.is_finite() or amount <= 0 or amount >= COLUMN_LIMIT:
        raise StrategyControlInvalid(f"{field}: an amount in USDT greater than 0, or null for no limit")
    if amount != amount.quantize(QUANT):
        raise StrategyControlInvalid(f"{field}: at most 10 decimal places")
    return amount


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    return str(value)


@transaction.atomic
def strategy_control_set(
    *,
    strategy: str,
    operator: Operator,
    enabled: object = UNCHANGED,
    max_open_positions: object = UNCHANGED,
    max_positions_per_day: object = UNCHANGED,
    max_exposure_usdt: object = UNCHANGED,
) -> StrategyControl:
    """Switch a strategy on or off and/or set its limits (None clears one); the fields not given stay.

    Needs the operator's reason; records who, when, from where and why in the operator audit (also
    when nothing changed, as the global switch does). Creates the strategy's row on its first change.
    """
    name = strategy_name_clean(strategy)
    reason = (operator.reason or "").strip()
    if not reason:
        raise StrategyControlInvalid("a reason is required to change a strategy's switch or limits")
    wanted: dict[str, object] = {}
    if enabled is not UNCHANGED:
        if not isinstance(enabled, bool):
            raise StrategyControlInvalid("enabled: true or false")
        wanted["enabled"] = enabled
    for field, value in (("max_open_positions", max_open_positions), ("max_positions_per_day", max_positions_per_day)):
        if value is not UNCHANGED:
            wanted[field] = _count_limit(field, value)
    if max_exposure_usdt is not UNCHANGED:
        wanted["max_exposure_usdt"] = _money_limit("max_exposure_usdt", max_exposure_usdt)
    # The OMS lock orders the change against every open: none that starts after this returns sees the old state.
    OmsControl.objects.select_for_update().get(pk=OmsControl.load().pk)
    row = StrategyControl.objects.select_for_update().filter(strategy=name).first() or StrategyControl(strategy=name)
    changes = {field: (getattr(row, field), value) for field, value in wanted.items() if getattr(row, field) != value}
    for field, value in wanted.items():
        setattr(row, field, value)
    row.changed_at, row.changed_by, row.reason = timezone.now(), operator.actor[:150], reason
    row.save()
    details: dict[str, object] = {"strategy": name}
    details.update({field: f"{_shown(old)} → {_shown(new)}" for field, (old, new) in changes.items()})
    if not changes:
        details["unchanged"] = True
    operator.record(OperatorActionKind.STRATEGY, details=details)
    if changes:
        from oms.services.notify import notify_strategy_change  # recorded now, sent by django-q after commit

        shown = {field: value for field, value in details.items() if field != "strategy"}
        notify_strategy_change(
            strategy=name,
            changes=shown,
            actor=operator.actor,
            reason=reason,
            source=operator.source,
            change_key=row.changed_at.isoformat(),
        )
    log_event(
        logger,
        "strategy_control_changed",
        strategy=name,
        enabled=row.enabled,
        max_open_positions=row.max_open_positions,
        max_positions_per_day=row.max_positions_per_day,
        max_exposure_usdt=row.max_exposure_usdt,
        actor=operator.actor,
        source=operator.source,
        reason=reason,
    )
    return row


# --- Reads (console page, API, command) -------------------------------------------------------


@dataclass(frozen=True)
class StrategyView:
    """A strategy as the console, the API and the command show it: its control and its figures now."""

    strategy: str
    configured: bool  # a control row exists (else: on, no limits of its own)
    enabled: bool
    max_open_positions: int | None
    max_positions_per_day: int | None
    max_exposure_usdt: Decimal | None
    changed_by: str
    changed_at: datetime | None
    reason: str
    open_positions: int
    open_exposure_usdt: Decimal
    positions_today: int
    total_positions: int

    def as_dict(self) -> dict:
        return {
            "strategy": self.strategy,
            "configured": self.configured,
            "enabled": self.enabled,
            "max_open_positions": self.max_open_positions,
            "max_positions_per_day": self.max_positions_per_day,
            "max_exposure_usdt": None if self.max_exposure_usdt is None else float(self.max_exposure_usdt),
            "open_positions": self.open_positions,
            "open_exposure_usdt": float(self.open_exposure_usdt),
            "positions_today": self.positions_today,
            "total_positions": self.total_positions,
            "changed_by": self.changed_by,
            "changed_at": self.changed_at,
            "reason": self.reason,
        }


def _figures(strategies: list[str] | None, now: datetime) -> dict[str, dict]:
    is_open, today = Q(status=PositionStatus.OPEN), Q(created_at__gte=_day_start(now))
    rows = Position.objects.exclude(strategy="")
    if strategies is not None:
        rows = rows.filter(strategy__in=strategies)
    grouped = (
        rows.order_by()
        .values("strategy")
        .annotate(
            open=Count("id", filter=is_open),
            notional=Sum(F("entry_price") * F("qty"), filter=is_open),
            today=Count("id", filter=today),
            total=Count("id"),
        )
    )
    return {row["strategy"]: row for row in grouped}


def _view(name: str, row: StrategyControl | None, figures: dict | None) -> StrategyView:
    figures = figures or {}
    return StrategyView(
        strategy=name,
        configured=row is not None,
        enabled=row.enabled if row else True,
        max_open_positions=row.max_open_positions if row else None,
        max_positions_per_day=row.max_positions_per_day if row else None,
        max_exposure_usdt=row.max_exposure_usdt if row else None,
        changed_by=row.changed_by if row else "",
        changed_at=row.changed_at if row else None,
        reason=row.reason if row else "",
        open_positions=figures.get("open", 0),
        open_exposure_usdt=figures.get("notional") or Decimal("0"),
        positions_today=figures.get("today", 0),
        total_positions=figures.get("total", 0),
    )


def strategy_list(now: datetime | None = None) -> list[StrategyView]:
    """Every strategy that has positions or a control row, by name (two queries)."""
    rows = {row.strategy: row for row in StrategyControl.objects.all()}
    figures = _figures(None, now or timezone.now())
    return [_view(name, rows.get(name), figures.get(name)) for name in sorted(rows.keys() | figures.keys())]


def strategy_get(strategy: str, now: datetime | None = None) -> StrategyView:
    """One strategy, also one never seen (on, no limits, no positions)."""
    name = strategy_name_clean(strategy)
    row = StrategyControl.objects.filter(strategy=name).first()
    return _view(name, row, _figures([name], now or timezone.now()).get(name))


def strategy_changes(limit: int = 20) -> list[OperatorAction]:
    """The latest changes of any strategy's switch or limits (from the operator audit)."""
    return list(OperatorAction.objects.filter(action=OperatorActionKind.STRATEGY)[:limit])
