"""Moving the stop loss of an open position (issue #12 §1): the bot's `POST /signals/stop` and the
console's "move stop" form call `position_stop_move`.

- `sl_price=None` is **break even**: the entry price itself. Fees are not added: a break-even stop
  that fills exactly at the entry loses the round-trip fees (and the slippage); it protects the
  capital, not the fees, and means the same on paper and on the exchange.
- A move that **loosens** the stop (a lower stop for a long, a higher one for a short) is refused
  unless the caller says so (`allow_loosen`). A stop at or beyond the current price (which would
  close the position at once) is refused when the price source has a quote; without one that check
  is skipped (the sweep then closes at the next usable price if the stop is already crossed).
- `sl_price` is the static stop every exit policy reads. A trailing position (`tp_sl_trailing_v1`)
  keeps trailing: its stop is the tighter of `sl_price` and the trail, so a tighter stop takes
  effect at the next sweep, and a looser one cannot undo a trail that is already ahead of it.
  `dynamic_sl_price` (the stop in force) is updated with it.
- A demo/live position's stop lives on the exchange: it is moved there first (outside any
  transaction), and stored only when the exchange took it.

Decisions are taken under the position's row lock. Of two moves of one exchange position racing each
other, the one stored first stays: the other finds the stop moved when it comes back from the
exchange, stores nothing and sends the kept stop to the exchange again, so both hold the same stop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from lomsite.jsonlog import log_event
from oms.amounts import QUANT
from oms.brokers import get_broker
from oms.brokers.base import BrokerError
from oms.exceptions import ExchangeStopFailed, PositionNotFound, PriceUnavailable
from oms.models import BrokerMode, OperatorActionKind, Position, Side
from oms.services.closing import tighter_stop
from oms.services.operator_audit import Operator
from oms.services.positions import market_price

logger = logging.getLogger("loms.oms")


@dataclass(frozen=True)
class StopMoveResult:
    position: Position
    moved: bool
    previous_sl_price: Decimal | None
    refused: str = ""  # why the stop was not moved ("" when it was)

    @property
    def sl_price_in_force(self) -> Decimal | None:
        """The stop the exit policy applies now: the trailed one when there is one, else `sl_price`."""
        dynamic = self.position.dynamic_sl_price
        return dynamic if dynamic is not None else self.position.sl_price


def position_stop_move(
    *,
    position_id: int,
    sl_price: Decimal | None,
    allow_loosen: bool = False,
    operator: Operator | None = None,
) -> StopMoveResult:
    """Move the stop loss of an open position to `sl_price` (None: break even, the entry price).

    A closed position, a loosening move without `allow_loosen`, a stop at or beyond the current price
    and a stop already at that level come back not moved, with the reason. With an `operator`, a move
    is recorded in the operator audit (action `stop_move`). Raises `ExchangeStopFailed` when the
    exchange does not take a demo/live position's new stop (the old one is kept).
    """
    try:
        position = Position.objects.get(pk=position_id)
    except Position.DoesNotExist:
        raise PositionNotFound(f"position {position_id} does not exist") from None
    if not position.is_open:
        return _closed(position)
    price_now = _price_now(position.symbol)
    requested = position.entry_price if sl_price is None else sl_price
    if position.broker_mode != BrokerMode.PAPER:  # stored as the exchange will hold it (before any lock)
        requested = _on_exchange_tick(position, requested)
    with transaction.atomic():
        # The row lock orders this move after any close or move of the same position.
        locked = Position.objects.select_for_update().open().filter(pk=position_id).first()
        if locked is None:
            position.refresh_from_db()
            return _closed(position)
        previous = locked.sl_price
        new_sl = requested.quantize(QUANT)
        refused = stop_move_refusal(
            side=locked.side, current=previous, new=new_sl, price_now=price_now, allow_loosen=allow_loosen
        )
        if refused:
            return StopMoveResult(locked, moved=False, previous_sl_price=previous, refused=refused)
        in_force = stop_in_force(side=locked.side, old_sl=previous, dynamic_sl=locked.dynamic_sl_price, new_sl=new_sl)
        if locked.broker_mode == BrokerMode.PAPER:
            _store(locked, new_sl, in_force, operator, break_even=sl_price is None)
            return StopMoveResult(locked, moved=True, previous_sl_price=previous)
    _exchange_move(locked, in_force if in_force is not None else new_sl)
    with transaction.atomic():
        stored = Position.objects.select_for_update().open().filter(pk=position_id).first()
        if stored is None:  # closed while the exchange was moving its stop: nothing left to protect
            position.refresh_from_db()
            return _closed(position)
        moved_meanwhile = (stored.sl_price, stored.dynamic_sl_price) != (previous, locked.dynamic_sl_price)
        if not moved_meanwhile:
            _store(stored, new_sl, in_force, operator, break_even=sl_price is None)
            return StopMoveResult(stored, moved=True, previous_sl_price=previous)
    # Another move (or the trail) landed while ours was at the exchange: LOMS keeps that stop, and the
    # exchange is given it again (ours may have reached it last), so both hold the same stop.
    kept = stored.dynamic_sl_price if stored.dynamic_sl_price is not None else stored.sl_price
    _exchange_move(stored, kept)
    refused = f"the stop was moved to {_fmt(kept)} while this move was at the exchange: it stays"
    return StopMoveResult(stored, moved=False, previous_sl_price=previous, refused=refused)


def stop_move_refusal(
    *, side: str, current: Decimal | None, new: Decimal, price_now: Decimal | None, allow_loosen: bool
) -> str:
    """Why a stop may not move from `current` to `new` ("" when it may)."""
    long = side == Side.LONG
    if current is not None and new == current:
        return f"the stop is already at {_fmt(new)}"
    if current is not None and not allow_loosen and (new < current if long else new > current):
        return (
            f"{_fmt(new)} would loosen the stop (now {_fmt(current)}) of a {side} position; "
            "send allow_loosen: true to loosen it"
        )
    if price_now is not None and (new >= price_now if long else new <= price_now):
        return (
            f"a stop at {_fmt(new)} is at or {'above' if long else 'below'} the current price {_fmt(price_now)}: "
            "it would close the position at once"
        )
    return ""


def stop_in_force(*, side: str, old_sl: Decimal | None, dynamic_sl: Decimal | None, new_sl: Decimal) -> Decimal | None:
    """The `dynamic_sl_price` after a move: None when the position has none (static exits), else the new
    stop, or the trail when the trail is already tighter (a trailing stop never loosens)."""
    if dynamic_sl is None:
        return None
    if dynamic_sl == old_sl:  # the trail is not ahead of the static stop
        return new_sl
    return tighter_stop(side, new_sl, dynamic_sl)


def _store(position: Position, new_sl: Decimal, in_force: Decimal | None, operator: Operator | None, **details) -> None:
    previous = position.sl_price
    position.sl_price = new_sl
    fields = ["sl_price"]
    if in_force is not None:
        position.dynamic_sl_price = in_force
        fields.append("dynamic_sl_price")
    position.save(update_fields=fields)
    record = {"symbol": position.symbol, "from": _fmt(previous), "to": _fmt(new_sl), **details}
    if in_force is not None:
        record["in_force"] = _fmt(in_force)
    if operator:
        operator.record(OperatorActionKind.STOP_MOVE, position=position, details=record)
    transaction.on_commit(
        lambda: log_event(
            logger, "stop_moved", position_id=position.pk, actor=operator.actor if operator else "signal", **record
        )
    )


def _exchange_move(position: Position, level: Decimal) -> None:
    """Move the exchange-side stop of a demo/live position (outside any transaction)."""
    broker = get_broker()
    if broker.is_paper:
        raise ExchangeStopFailed(
            f"position {position.pk} is a {position.broker_mode} position and BROKER_MODE is paper: "
            "its stop is on the exchange and cannot be moved from here"
        )
    if level == (position.dynamic_sl_price if position.dynamic_sl_price is not None else position.sl_price):
        return  # the exchange already holds this level (a trail ahead of the new static stop)
    try:
        broker.move_stop(symbol=position.symbol, side=position.side, sl_price=level)
    except BrokerError as exc:
        log_event(logger, "exchange_stop_not_moved", logging.WARNING, position_id=position.pk, error=exc.message)
        raise ExchangeStopFailed(
            f"the exchange did not move the stop of position {position.pk}: {exc.message}"
        ) from exc


def _on_exchange_tick(position: Position, level: Decimal) -> Decimal:
    try:
        return get_broker().stop_level(symbol=position.symbol, side=position.side, price=level)
    except BrokerError as exc:
        raise ExchangeStopFailed(f"the exchange's markets are unavailable: {exc.message}") from exc


def _price_now(symbol: str) -> Decimal | None:
    try:
        return market_price(symbol)
    except PriceUnavailable:
        return None


def _closed(position: Position) -> StopMoveResult:
    reason = f" ({position.auto_close_reason})" if position.auto_close_reason else ""
    refused = f"position {position.pk} is {position.status}{reason}"
    return StopMoveResult(position, moved=False, previous_sl_price=position.sl_price, refused=refused)


def _fmt(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")
