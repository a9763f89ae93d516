"""Orders on the exchange (demo/live, issue #11): entry, close, reconciliation, flatten, preflight.

The paper path never comes here. The exchange is called **outside** the OMS lock: the position and
its entry order are committed first (status `submitted`, with the client order id derived from
the position, itself unique per signal), so the risk caps count it while it is in flight and a
process killed between sending and the answer leaves a row that names the order. Resolving an
unknown outcome always means looking the order up by that id, never sending it again; an order
the exchange accepted is never cancelled in LOMS because its read-back failed. Closes follow the
same rule: the exit order is committed `submitted` first, then sent outside any transaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.brokers import get_broker
from oms.brokers.base import Broker, BrokerError, EntryRefused, Fill, OrderNotFound
from oms.exceptions import (
    ExchangeCloseFailed,
    ExchangePositionInPaperMode,
    PartialExitAlreadySent,
    PartialExitRefused,
    RiskLimitExceeded,
)
from oms.models import (
    BrokerMode,
    BrokerMonitor,
    CloseReason,
    OperatorSource,
    Order,
    OrderPurpose,
    OrderStatus,
    Position,
    PositionStatus,
    Signal,
    SignalKind,
    SignalOutcome,
    SwitchSource,
    TradeSide,
)
from oms.services.book import book_changed
from oms.services.closing import PARTIAL_FIELDS, STOP_FIELDS, CloseInstruction, close_positions, tighter_stop
from oms.services.operator_audit import SWITCH_TO_OPERATOR_SOURCE, Operator, position_close_details
from oms.services.switch import oms_switch_set, switch_state

logger = logging.getLogger("loms.oms.broker")
RATE_LIMIT_BACKOFF_SEC = (0.5, 1.0, 2.0)


def broker_alert(message: str) -> None:
    """THE call site for broker alerts (reconciliation mismatch, auth failure, unknown outcome).
    Wire the notifications service (oms/services/notify.py) here; today it is a WARNING log line."""
    log_event(logger, "broker_alert", logging.WARNING, alert=message)


def switch_off(reason: str) -> None:
    """Turn the OMS switch off on the broker's behalf (no new positions until a person re-arms it)."""
    if switch_state().switch_on:
        oms_switch_set(enabled=False, actor="broker", reason=reason, source=SwitchSource.AUTO)
    broker_alert(reason)


def client_order_id(position: Position, purpose: str, attempt: int = 1) -> str:
    """`loms-<position>-o` for the entry, `loms-<position>-c<n>` for the n-th close attempt."""
    return f"loms-{position.pk}-o" if purpose == "entry" else f"loms-{position.pk}-c{attempt}"


def _trade_side(position_side: str, purpose: str) -> str:
    opening = position_side == "long"
    return TradeSide.BUY if opening == (purpose == OrderPurpose.ENTRY) else TradeSide.SELL


def _with_backoff(call):
    """Call; on a rate-limit answer wait and try again (nothing was accepted, so a retry is safe)."""
    for delay in (*RATE_LIMIT_BACKOFF_SEC, None):
        try:
            return call()
        except BrokerError as exc:
            if exc.kind != "rate_limited" or delay is None:
                raise
            log_event(logger, "broker_rate_limited", logging.WARNING, retry_in_sec=delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


# --- entry ---------------------------------------------------------------------------------------
def entry_qty(*, symbol: str, qty: Decimal, price: Decimal, broker: Broker | None = None) -> Decimal:
    """Inside the OMS lock, before the risk check: the qty the exchange will get (lot size), or a
    RiskLimitExceeded naming the market's minimum or LIVE_MAX_NOTIONAL_USDT."""
    broker = broker or get_broker()
    try:
        return broker.entry_qty(symbol=symbol, qty=qty, price=price)
    except EntryRefused as exc:
        raise RiskLimitExceeded(exc.message, "exchange") from None
    except BrokerError as exc:
        raise RiskLimitExceeded(f"exchange markets unavailable: {exc.message}", "exchange") from None


def pretrade_sanity(*, symbol: str, price: Decimal, timestamp: datetime, now: datetime | None = None) -> str:
    """Why a signal must not trade ("" when it may): older than MAX_SIGNAL_AGE_SEC, or its price more
    than MAX_SIGNAL_PRICE_DEVIATION_PCT away from the current quote (checked before the OMS lock)."""
    now = now or timezone.now()
    if settings.MAX_SIGNAL_AGE_SEC is not None:
        age = (now - timestamp).total_seconds()
        if age > settings.MAX_SIGNAL_AGE_SEC:
            return f"signal is {age:.0f} s old (MAX_SIGNAL_AGE_SEC {settings.MAX_SIGNAL_AGE_SEC})"
    if settings.MAX_SIGNAL_PRICE_DEVIATION_PCT is not None:
        from oms.exceptions import PriceUnavailable
        from oms.services.positions import market_price

        try:
            quote = market_price(symbol)
        except PriceUnavailable as exc:
            return f"no current price to check the signal against: {exc}"
        deviation = abs(price - quote) / quote * 100
        if deviation > settings.MAX_SIGNAL_PRICE_DEVIATION_PCT:
            return (
                f"signal price {price} is {deviation:.2f} % away from the current price {quote} "
                f"(MAX_SIGNAL_PRICE_DEVIATION_PCT {settings.MAX_SIGNAL_PRICE_DEVIATION_PCT})"
            )
    return ""


def mark_entry_submitted(order: Order) -> None:
    """Inside the opening transaction: the entry order is to be sent (not filled yet)."""
    position = order.position
    position.broker_mode = settings.BROKER_MODE
    position.save(update_fields=["broker_mode"])
    order.status = OrderStatus.SUBMITTED
    order.trade_side = _trade_side(position.side, OrderPurpose.ENTRY)
    order.client_order_id = client_order_id(position, "entry")
    order.price = None
    order.save(update_fields=["status", "trade_side", "client_order_id", "price"])


def _book_entry_fill(order: Order, fill: Fill) -> None:
    """Write an entry order's outcome; the position takes the fill's price, qty and fee."""
    now = timezone.now()
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        if order.status not in (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED):
            if order.status == OrderStatus.REJECTED and fill.qty > 0:  # never silently ignored
                transaction.on_commit(
                    lambda: switch_off(
                        f"late fill of entry order {order.client_order_id} already marked rejected: {fill.qty} at "
                        f"{fill.price} on the exchange (position {order.position_id} is cancelled in LOMS)"
                    )
                )
            return  # already resolved (by the reconciliation, say)
        position = Position.objects.select_for_update().get(pk=order.position_id)
        order.status, order.updated_at = fill.status, now
        order.exchange_order_id = fill.exchange_order_id or order.exchange_order_id
        if fill.qty > 0 and fill.price:
            order.filled_qty, order.price, order.fee = fill.qty, fill.price, fill.fee
            position.qty, position.entry_price, position.fee = fill.qty, fill.price, fill.fee
            position.save(update_fields=["qty", "entry_price", "fee"])
            book_changed()
        elif fill.status in (OrderStatus.REJECTED, OrderStatus.CANCELLED):
            _cancel_position(position, order, "the exchange did not fill the entry order")
        order.save(update_fields=["status", "updated_at", "exchange_order_id", "filled_qty", "price", "fee"])
    log_event(
        logger,
        "entry_order_outcome",
        position_id=order.position_id,
        status=fill.status,
        qty=fill.qty,
        price=fill.price,
        fee=fill.fee,
    )


def _cancel_position(position: Position, order: Order, error: str) -> None:
    Position.objects.filter(pk=position.pk, status=PositionStatus.OPEN).update(status=PositionStatus.CANCELLED)
    order.error = error[:2000]
    book_changed()


def public_reason(exc: BrokerError) -> str:
    """What the bot is told about a failed exchange call: short, never the exchange's URL or raw
    answer (those go to the order's error and the log)."""
    if exc.kind == "auth":
        return "exchange authentication failed"
    if exc.kind == "rate_limited":
        return "exchange rate limit, try later"
    if exc.kind == "refused":
        if exc.message.startswith("insufficient balance"):
            return "insufficient balance"
        return f"the exchange refused the order ({exc.message.split(':', 1)[0][:40]})"
    return "exchange unavailable"


def _refuse_entry(order: Order, signal: Signal | None, reason: str, detail: str = "") -> None:
    """Refuse an entry: `reason` is what the bot is told, `detail` (the exchange's answer) is
    recorded on the order and in the log only."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        order.status, order.updated_at = OrderStatus.REJECTED, timezone.now()
        _cancel_position(order.position, order, f"{reason}: {detail}" if detail else reason)
        order.save(update_fields=["status", "updated_at", "error"])
        if signal is not None:
            signal.outcome, signal.reason = SignalOutcome.BROKER_REJECTED, reason
            signal.response = {
                "received": True,
                "oms_enabled": True,
                "risk_ok": False,
                "risk_reason": f"exchange refused the order: {reason}",
            }
            signal.save(update_fields=["outcome", "reason", "response"])
    log_event(
        logger, "entry_order_refused", logging.WARNING, position_id=order.position_id, reason=reason, detail=detail
    )


def _entry_pending(order: Order, signal: Signal | None, error: str) -> None:
    """The entry may be (or is) on the exchange but its outcome is unknown: the order stays
    `submitted` (the position counts for the caps) and the reconciliation settles it by its client
    order id. The bot is told the order is pending, not refused."""
    broker_alert(
        f"entry of position {order.position_id}: outcome unknown ({error}); "
        "the reconciliation will resolve it by its client order id"
    )
    if signal is not None:
        signal.response = {**signal.response, "order_status": OrderStatus.SUBMITTED, "pending": True}
        signal.save(update_fields=["response"])


def entry_send(order: Order, signal: Signal | None = None) -> Fill | None:
    """After the opening transaction committed: send the entry order with its TP/SL and book the
    outcome; the fill, or None when the order was refused or its outcome is unknown. Never sends
    twice: an unknown outcome is looked up by the client order id; when even that fails the order
    stays `submitted` for the reconciliation. `signal` (if any) is answered with a refusal."""
    position = order.position
    broker = get_broker()
    try:
        try:
            fill = _with_backoff(
                lambda: broker.open(
                    symbol=position.symbol,
                    side=position.side,
                    qty=order.qty,
                    price=position.entry_price,
                    client_order_id=order.client_order_id,
                    tp_price=position.tp_price,
                    sl_price=position.sl_price,
                )
            )
        except (BrokerError, EntryRefused):
            raise
        except Exception as unexpected:  # an answer we could not read: the order may exist
            logger.exception("entry order: unexpected error")
            raise BrokerError(
                f"{type(unexpected).__name__}: {unexpected}", kind="unavailable", maybe_sent=True
            ) from unexpected
    except EntryRefused as exc:
        _refuse_entry(order, signal, exc.message)
        return None
    except BrokerError as exc:
        if exc.kind == "auth":
            switch_off(f"exchange authentication failed: {exc.message}")
        if not exc.maybe_sent:
            _refuse_entry(order, signal, public_reason(exc), exc.message)
            return None
        try:
            # Only the read-back is retried after a rate limit, never the place request.
            fill = _with_backoff(lambda: broker.lookup(symbol=position.symbol, client_order_id=order.client_order_id))
        except OrderNotFound as lookup_exc:
            if not exc.accepted:
                _refuse_entry(order, signal, "the order never reached the exchange", exc.message)
                return None
            _entry_pending(order, signal, lookup_exc.message)
            return None
        except BrokerError as lookup_exc:
            _entry_pending(order, signal, lookup_exc.message)
            return None
    _book_entry_fill(order, fill)
    if fill.status in (OrderStatus.REJECTED, OrderStatus.CANCELLED) and fill.qty == 0:
        _refuse_entry(order, signal, "the exchange did not fill the entry order")
        return None
    return fill


def entry_execute(signal: Signal) -> Signal:
    """The signal path: send its position's entry order; its answer gains the exchange's fill."""
    position = signal.position
    fill = entry_send(position.orders.get(purpose=OrderPurpose.ENTRY), signal)
    if fill is not None:
        position.refresh_from_db()
        signal.response = {
            **signal.response,
            "order_status": fill.status,
            "entry_price": float(position.entry_price),
            "qty": float(position.qty),
        }
        signal.save(update_fields=["response"])
    signal.refresh_from_db()
    return signal


# --- close ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExchangeCloseResult:
    position: Position
    closed_now: bool  # the position is closed by this call (not by a partial exit)
    exited_qty: Decimal | None = None  # what this call's exit order filled


def _book_close(
    position: Position,
    *,
    price: Decimal,
    fee: Decimal,
    qty: Decimal,
    reason: str,
    order: Order,
    now: datetime,
    level_fields: dict | None = None,
) -> bool:
    """Book an exchange fill of `qty` as the position's close, or as a partial exit when `qty` is
    less than what is open, through the one close path (oms/services/closing.py), with the exit
    levels a policy moved (`level_fields`). True when the fill was booked now (`position` then
    holds the new values). An exit order recorded before it was sent is booked once: the order row
    is locked and must still be `submitted` (the sender and the reconciliation may both get its fill)."""
    instruction = CloseInstruction(position.pk, price, reason, level_fields, fill_fee=fee, exit_order=order, qty=qty)
    with transaction.atomic():
        if order.pk is not None:
            pending = Order.objects.select_for_update().filter(pk=order.pk, status=OrderStatus.SUBMITTED)
            if not pending.exists():
                return False
        outcome = close_positions([instruction], now=now)
    if outcome.failed:
        raise ExchangeCloseFailed(
            f"the close of position {position.pk} could not be booked: {outcome.failed[position.pk]}"
        )
    booked = outcome.closed or outcome.partially_closed
    if not booked:
        return False
    for name in ("status", "closed_at", "close_price", "fee", "pnl", "auto_close_reason", *PARTIAL_FIELDS):
        setattr(position, name, getattr(booked[0], name))
    return True


def _in_paper_mode(position: Position) -> ExchangePositionInPaperMode:
    return ExchangePositionInPaperMode(
        f"position {position.pk} is a {position.broker_mode} position on the exchange and BROKER_MODE is paper: "
        "LOMS cannot close it; set BROKER_MODE back, flatten, then switch to paper (docs/LIVE.md, rollback)"
    )


def exchange_position_close(
    *,
    position: Position,
    reason: str,
    now: datetime | None = None,
    fraction: Decimal | None = None,
    level_fields: dict | None = None,
) -> ExchangeCloseResult:
    """Close an exchange position with a reduce-only market order; its fill is the close. With a
    `fraction` below 1, the order is that share of the quantity open under the row lock (rounded
    down to the lot size) and its fill a partial exit (issue #12 §2); `level_fields` are stored with
    the booking. A TP1 exit is sent once per position (PartialExitAlreadySent).

    Three steps, the HTTP call outside any write transaction (SQLite holds its write lock for a
    whole transaction): (1) under the position's row lock, record the exit order `submitted`; a
    close finding an exit order already `submitted` sends nothing (two closes never both send);
    (2) send; (3) book the fill through close_positions. A failed close is recorded (a rejected
    exit order) and raised; the position stays open. An outcome that is unknown leaves the exit
    order `submitted` for the reconciliation, which resolves it by its client id.
    """
    broker = get_broker()
    if broker.is_paper:
        raise _in_paper_mode(position)
    partial = fraction is not None and fraction < 1
    if partial:
        _markets_loaded(broker, position)  # over HTTP maybe: before the lock
    with transaction.atomic():
        locked = Position.objects.select_for_update().open().filter(pk=position.pk).first()
        if locked is None:
            position.refresh_from_db()
            return ExchangeCloseResult(position=position, closed_now=False)
        if (
            reason in ONCE_PER_POSITION
            and locked.orders.filter(purpose=OrderPurpose.EXIT, close_reason=reason)
            .exclude(status=OrderStatus.REJECTED)
            .exists()
        ):
            raise PartialExitAlreadySent(f"the {reason} exit of position {locked.pk} was sent already")
        order_qty = _partial_exit_qty(broker, locked, fraction) if partial else locked.qty
        in_flight = locked.orders.filter(purpose=OrderPurpose.EXIT, status=OrderStatus.SUBMITTED).first()
        if in_flight is not None:
            raise ExchangeCloseFailed(
                f"a close order of position {locked.pk} ({in_flight.client_order_id}) is "
                "already in flight; the reconciliation resolves it by its client id"
            )
        attempt = locked.orders.filter(purpose=OrderPurpose.EXIT).count() + 1
        order = Order.objects.create(
            position=locked,
            exchange=locked.exchange,
            symbol=locked.symbol,
            side=locked.side,
            qty=order_qty,
            status=OrderStatus.SUBMITTED,
            purpose=OrderPurpose.EXIT,
            trade_side=_trade_side(locked.side, OrderPurpose.EXIT),
            reduce_only=True,
            client_order_id=client_order_id(locked, "exit", attempt),
            close_reason=reason,
            created_at=timezone.now(),
        )
    failure = None
    try:
        fill = _with_backoff(
            lambda: broker.close(
                symbol=locked.symbol,
                side=locked.side,
                qty=order_qty,
                price=None,
                client_order_id=order.client_order_id,
            )
        )
    except BrokerError as exc:
        fill, failure = None, exc
        if exc.maybe_sent:
            try:
                fill = _with_backoff(lambda: broker.lookup(symbol=locked.symbol, client_order_id=order.client_order_id))
                failure = None
            except BrokerError:
                pass
    if failure is not None and failure.kind == "auth":
        switch_off(f"exchange authentication failed: {failure.message}")
    now = now or timezone.now()
    if not _book_exit_fill(locked, order, fill, failure=failure, reason=reason, now=now, level_fields=level_fields):
        locked.refresh_from_db()  # the reconciliation booked this fill first: report the row as it is
    return ExchangeCloseResult(position=locked, closed_now=not locked.is_open, exited_qty=order.filled_qty)


# Partial exits a policy makes once per position: never sent a second time, whatever the sweep decides.
ONCE_PER_POSITION = (CloseReason.TP1,)


def _markets_loaded(broker: Broker, position: Position) -> None:
    """Load the exchange's markets (lot sizes) before taking a lock: they may be read over HTTP."""
    try:
        broker.lot_qty(symbol=position.symbol, qty=position.qty)
    except EntryRefused:
        pass  # the share is checked under the lock
    except BrokerError as exc:
        raise ExchangeCloseFailed(f"exchange markets unavailable: {exc.message}") from None


def _partial_exit_qty(broker: Broker, position: Position, fraction: Decimal) -> Decimal:
    """`fraction` of the quantity open now (under the row lock), rounded down to the exchange's lot
    size (the markets are loaded already); refused when that is below the market's minimum."""
    try:
        return min(broker.lot_qty(symbol=position.symbol, qty=position.qty * fraction), position.qty)
    except EntryRefused as exc:
        raise PartialExitRefused(f"a partial exit of position {position.pk} is refused: {exc.message}") from None
    except BrokerError as exc:
        raise ExchangeCloseFailed(f"exchange markets unavailable: {exc.message}") from None


def _book_exit_fill(
    position: Position,
    order: Order,
    fill: Fill | None,
    *,
    failure: BrokerError | None,
    reason: str,
    now: datetime,
    level_fields: dict | None = None,
) -> bool:
    """Write an exit order's outcome and book what filled: the whole open quantity is the close,
    less is a partial exit. An order filled only in part (the exchange closed less than asked: the
    position shrank there, by ADL say) is booked for what filled, and the switch goes off for an
    operator; nothing filled raises ExchangeCloseFailed."""
    order.updated_at = timezone.now()
    if fill is None or fill.qty <= 0 or fill.price is None:
        refused = (failure is not None and not failure.maybe_sent) or (
            fill is not None and fill.status in (OrderStatus.REJECTED, OrderStatus.CANCELLED)
        )
        order.status = OrderStatus.REJECTED if refused else OrderStatus.SUBMITTED
        order.error = failure.message if failure else f"close order {fill.status if fill else 'unknown'}, not filled"
        order.save(update_fields=["status", "error", "updated_at"])
        log_event(logger, "exchange_close_failed", logging.WARNING, position_id=position.pk, error=order.error)
        raise ExchangeCloseFailed(f"the exchange did not close position {position.pk}: {order.error}")
    order.price, order.filled_qty, order.fee = fill.price, fill.qty, fill.fee
    order.exchange_order_id = fill.exchange_order_id or order.exchange_order_id
    if fill.qty < order.qty:
        if fill.status == OrderStatus.SUBMITTED:  # still working: the reconciliation settles it
            order.status = OrderStatus.SUBMITTED
            order.error = f"partial exit fill: {fill.qty} of {order.qty}"
            order.save(
                update_fields=["status", "price", "filled_qty", "fee", "exchange_order_id", "error", "updated_at"]
            )
            message = (
                f"position {position.pk}: partial exit fill: {fill.qty} of {order.qty} so far (still open in LOMS)"
            )
            switch_off(message)
            raise ExchangeCloseFailed(message)
        order.status = OrderStatus.PARTIALLY_FILLED
        order.error = f"partial exit fill: {fill.qty} of {order.qty}"
        _book_close(
            position,
            price=fill.price,
            fee=fill.fee,
            qty=fill.qty,
            reason=reason,
            order=order,
            now=now,
            level_fields=level_fields,
        )
        message = (
            f"position {position.pk}: partial exit fill: {fill.qty} of {order.qty} "
            f"(booked; {position.qty} still open in LOMS)"
        )
        switch_off(message)
        raise ExchangeCloseFailed(message)
    order.status = OrderStatus.FILLED
    return _book_close(
        position,
        price=fill.price,
        fee=fill.fee,
        qty=fill.qty,
        reason=reason,
        order=order,
        now=now,
        level_fields=level_fields,
    )


def sweep_exchange_positions(
    closes: list[CloseInstruction], updates: list[Position]
) -> tuple[list[CloseInstruction], list[Position]]:
    """The auto-close sweep's decisions for exchange positions, taken out of its paper batch.

    TP and SL (static or trailing) are the exchange's own orders: the sweep does not race them. A
    trailing stop that moved is moved on the exchange first (the new level is stored only if the
    exchange took it). A timeout closes with a reduce-only market order. Returns what is left for
    the paper batch.
    """
    ids = {close.position_id for close in closes} | {p.pk for p in updates}
    if not ids:
        return closes, updates
    exchange_ids = ids & set(Position.objects.open().exclude(broker_mode=BrokerMode.PAPER).values_list("pk", flat=True))
    if not exchange_ids:
        return closes, updates
    broker = get_broker()
    if broker.is_paper:  # never closed (nor moved) at a simulated price: reported, left for a flatten
        for position_id in sorted(exchange_ids):
            log_event(
                logger,
                "exchange_position_skipped",
                logging.WARNING,
                position_id=position_id,
                reason="BROKER_MODE is paper",
            )
        broker_alert(
            f"exchange positions {sorted(exchange_ids)} are open while BROKER_MODE is paper: the sweep "
            "skips them; flatten them in demo/live mode (docs/LIVE.md, rollback)"
        )
        return (
            [c for c in closes if c.position_id not in exchange_ids],
            [u for u in updates if u.pk not in exchange_ids],
        )
    kept_updates = []
    for update in updates:
        if update.pk not in exchange_ids:
            kept_updates.append(update)
            continue
        position = Position.objects.get(pk=update.pk)
        new_sl = getattr(update, "dynamic_sl_price", None)
        in_force = tighter_stop(position.side, position.sl_price, position.dynamic_sl_price)
        if new_sl is not None and tighter_stop(position.side, new_sl, in_force) != new_sl:
            continue  # decided from values read before a stop move: never loosen it (the next sweep decides)
        if new_sl is not None and new_sl != position.dynamic_sl_price:
            try:
                broker.move_stop(symbol=position.symbol, side=position.side, sl_price=new_sl)
            except BrokerError as exc:
                log_event(
                    logger, "exchange_stop_not_moved", logging.WARNING, position_id=position.pk, error=exc.message
                )
                continue
        kept_updates.append(update)
    paper_closes = []
    for close in closes:
        if close.position_id not in exchange_ids:
            paper_closes.append(close)
            continue
        if close.fraction is not None:  # tp_scale_out's first take profit: LOMS's own, not on the exchange
            _exchange_partial_exit(broker, close)
            continue
        if close.reason != CloseReason.TIMEOUT:
            continue  # the exchange's TP/SL closes it; the reconciliation books it
        try:
            exchange_position_close(position=Position.objects.get(pk=close.position_id), reason=close.reason)
        except (BrokerError, ExchangeCloseFailed) as exc:
            log_event(
                logger,
                "exchange_timeout_close_failed",
                logging.WARNING,
                position_id=close.position_id,
                error=exc.message,
            )
    return paper_closes, kept_updates


def _exchange_partial_exit(broker: Broker, close: CloseInstruction) -> None:
    """A partial exit the sweep decided for an exchange position (tp_scale_out's TP1): a reduce-only
    order for the share, booked with the policy's levels (TP1 done); then the exchange-side stop
    moves to the policy's stop (break-even, or the trail when tighter), stored once the exchange
    took it. A TP1 sent before (its answer lost, filled in part, a stale decision) is never sent
    again: its levels and stop are applied instead. A share below the market's minimum can never be
    sent: TP1 is skipped for the position, which then trails as tp_sl_trailing_v1 does."""
    position = Position.objects.get(pk=close.position_id)
    levels = dict(close.level_fields or {})
    stop = {name: levels.pop(name) for name in STOP_FIELDS if name in levels}
    try:
        exchange_position_close(position=position, reason=close.reason, fraction=close.fraction, level_fields=levels)
    except PartialExitAlreadySent:
        Position.objects.open().filter(pk=position.pk).update(**levels)
    except PartialExitRefused as exc:
        _skip_partial_exit(broker, position, levels, stop, exc.message)
        return
    except (BrokerError, ExchangeCloseFailed) as exc:  # the next sweep, or the reconciliation, decides
        log_event(logger, "exchange_partial_exit_failed", logging.WARNING, position_id=position.pk, error=exc.message)
        return
    position.refresh_from_db()
    new_stop = stop.get("dynamic_sl_price") or stop.get("sl_price")
    if not position.is_open or new_stop is None or position.dynamic_sl_price == new_stop:
        return
    try:
        broker.move_stop(symbol=position.symbol, side=position.side, sl_price=new_stop)
    except BrokerError as exc:
        broker_alert(f"position {position.pk}: the exchange refused to move its stop to {new_stop}: {exc.message}")
        return
    Position.objects.open().filter(pk=position.pk).update(**stop)


def _skip_partial_exit(broker: Broker, position: Position, levels: dict, stop: dict, why: str) -> None:
    """TP1 can never be sent (its share is below the market's minimum): the position keeps its
    static stop and goes on trailing (`tp1_skipped`); the trail the policy computed is kept when it
    is tighter than break-even, moved on the exchange first."""
    meta = {key: value for key, value in levels.get("exit_meta", {}).items() if not key.startswith("tp1_")}
    fields = {"exit_meta": {**meta, "tp1_skipped": why}}
    if "max_favorable_move" in levels:
        fields["max_favorable_move"] = levels["max_favorable_move"]
    trail = stop.get("dynamic_sl_price")
    if trail is not None and trail != stop.get("sl_price") and trail != position.dynamic_sl_price:
        try:
            broker.move_stop(symbol=position.symbol, side=position.side, sl_price=trail)
            fields["dynamic_sl_price"] = trail
        except BrokerError as exc:
            log_event(logger, "exchange_stop_not_moved", logging.WARNING, position_id=position.pk, error=exc.message)
    Position.objects.open().filter(pk=position.pk).update(**fields)
    broker_alert(f"position {position.pk}: TP1 skipped: {why}")


# --- reconciliation ------------------------------------------------------------------------------
@dataclass
class ReconcileResult:
    state: str = "ok"  # ok / mismatch / error
    closed: list[int] = field(default_factory=list)  # positions closed because the exchange closed them
    resolved_orders: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# A stop-market fill slips past its trigger: a fill this close to a level (either side) counts as it.
EXIT_LEVEL_TOLERANCE_PCT = Decimal("0.5")


def _exchange_reason(position: Position, price: Decimal) -> str:
    """Why the exchange closed a position, from where its fill is: at or beyond (with slippage
    tolerance) the position's current stop (the trailed `dynamic_sl_price` when there is one, else
    `sl_price`) → exchange_sl; at or beyond its take profit → exchange_tp; else exchange_close
    (liquidation, a close in the exchange's app). When both match, the nearer level wins."""
    long = position.side == "long"
    stop = position.dynamic_sl_price if position.dynamic_sl_price is not None else position.sl_price
    tolerance = price * EXIT_LEVEL_TOLERANCE_PCT / 100
    candidates = []
    if stop is not None and (price <= stop + tolerance if long else price >= stop - tolerance):
        candidates.append((abs(price - stop), CloseReason.EXCHANGE_SL))
    if position.tp_price is not None and (
        price >= position.tp_price - tolerance if long else price <= position.tp_price + tolerance
    ):
        candidates.append((abs(price - position.tp_price), CloseReason.EXCHANGE_TP))
    if not candidates:
        return CloseReason.EXCHANGE_CLOSE
    return min(candidates, key=lambda c: c[0])[1]


def reconcile(*, now: datetime | None = None, broker: Broker | None = None) -> ReconcileResult:
    """LOMS's exchange positions against the exchange's. What the exchange closed is closed here
    with its price and fee; what cannot be explained turns the switch off with the reason."""
    now = now or timezone.now()
    broker = broker or get_broker()
    result = ReconcileResult()
    if broker.is_paper:
        return result
    try:
        _resolve_submitted(broker, result, now)
        _reconcile_positions(broker, result, now)
    except BrokerError as exc:
        result.state, result.problems = "error", [*result.problems, f"exchange unavailable: {exc.message}"]
        if exc.kind == "auth":
            switch_off(f"reconciliation: exchange authentication failed: {exc.message}")
    if result.problems and result.state == "ok":
        result.state = "mismatch"
        switch_off("reconciliation: " + "; ".join(result.problems)[:900])
    monitor = BrokerMonitor.load()
    monitor.last_run_at, monitor.last_state = now, result.state
    monitor.last_detail = "; ".join(result.problems)[:2000]
    monitor.runs += 1
    monitor.closed_by_exchange += len(result.closed)
    monitor.save()
    log_event(logger, "reconciliation", state=result.state, closed=result.closed, problems=result.problems)
    return result


def _resolve_submitted(broker: Broker, result: ReconcileResult, now: datetime) -> None:
    """Orders still `submitted` (a timeout, a killed process, a failed read-back): look them up by
    their client id. "Not found" means never placed only after RECONCILE_SUBMITTED_GRACE_SEC (an
    order just sent may not be visible yet). Entries and exits alike."""
    pending = (
        Order.objects.filter(status=OrderStatus.SUBMITTED).exclude(client_order_id=None).select_related("position")
    )
    for order in pending:
        young = (now - order.created_at).total_seconds() <= settings.RECONCILE_SUBMITTED_GRACE_SEC
        try:
            fill = broker.lookup(symbol=order.symbol, client_order_id=order.client_order_id)
        except OrderNotFound:
            if young:
                continue  # may still be in flight: the next run decides
            if order.purpose == OrderPurpose.ENTRY:
                entry_signal = order.position.signals.filter(kind=SignalKind.ENTRY).first()
                _refuse_entry(order, entry_signal, "the order never reached the exchange")
            else:  # a new close may be sent
                Order.objects.filter(pk=order.pk).update(
                    status=OrderStatus.REJECTED, error="not on the exchange", updated_at=now
                )
            result.resolved_orders.append(order.pk)
            continue
        if fill.status != OrderStatus.SUBMITTED and order.purpose == OrderPurpose.ENTRY:
            _book_entry_fill(order, fill)
            result.resolved_orders.append(order.pk)
        elif fill.status != OrderStatus.SUBMITTED and order.position is not None:
            try:
                if fill.qty > 0 and fill.price is not None:
                    reason = _exchange_reason(order.position, fill.price)
                else:
                    reason = CloseReason.EXCHANGE_CLOSE
                booked = _book_exit_fill(order.position, order, fill, failure=None, reason=reason, now=now)
                if booked and not order.position.is_open:
                    result.closed.append(order.position_id)
            except ExchangeCloseFailed as exc:
                log_event(logger, "exit_order_resolved", logging.WARNING, order_id=order.pk, outcome=exc.message)
            result.resolved_orders.append(order.pk)
        elif not young:
            result.problems.append(f"order {order.client_order_id} stuck in submitted")


def _reconcile_positions(broker: Broker, result: ReconcileResult, now: datetime) -> None:
    on_exchange = {(p.symbol, p.side): p for p in broker.positions()}
    ours = list(Position.objects.open().exclude(broker_mode=BrokerMode.PAPER))
    by_key: dict[tuple[str, str], list[Position]] = {}
    for position in ours:
        by_key.setdefault((position.symbol, position.side), []).append(position)
    for key, positions in by_key.items():
        held = on_exchange.pop(key, None)
        expected = sum(p.qty for p in positions)
        in_flight = any(p.orders.filter(status=OrderStatus.SUBMITTED).exists() for p in positions)
        if held is not None:
            if held.qty != expected and not in_flight:  # an order in flight: the next run decides
                result.problems.append(f"size mismatch on {key[0]} {key[1]}: LOMS {expected}, exchange {held.qty}")
            continue
        if in_flight:
            continue  # in flight: the next run decides
        since_ms = int(min(p.created_at for p in positions).timestamp() * 1000)
        closed = broker.last_close(symbol=key[0], side=key[1], since_ms=since_ms)
        if closed is None:
            result.problems.append(f"{key[0]} {key[1]} open in LOMS but not on the exchange, and no close found")
            continue
        for position in positions:
            # The close fee of what LOMS still holds: pro rata when the exchange's row also covers
            # earlier partial exits (booked with their own fees) or other positions of the symbol.
            fee = (
                closed.close_fee * min(Decimal("1"), position.qty / closed.qty) if closed.qty > 0 else closed.close_fee
            )
            order = Order(
                position=position,
                exchange=position.exchange,
                symbol=position.symbol,
                side=position.side,
                qty=position.qty,
                price=closed.close_price,
                status=OrderStatus.FILLED,
                purpose=OrderPurpose.EXIT,
                trade_side=_trade_side(position.side, OrderPurpose.EXIT),
                reduce_only=True,
                filled_qty=position.qty,
                fee=fee,
                created_at=now,
            )
            try:
                if _book_close(
                    position,
                    price=closed.close_price,
                    fee=fee,
                    qty=position.qty,
                    order=order,
                    now=now,
                    reason=_exchange_reason(position, closed.close_price),
                ):
                    result.closed.append(position.pk)
            except ExchangeCloseFailed as exc:  # this row cannot be booked: say so, book the others
                result.problems.append(exc.message)
    for symbol, side in on_exchange:
        result.problems.append(f"unknown position on the exchange: {symbol} {side}{_late_fills(broker, symbol, side)}")


def _late_fills(broker: Broker, symbol: str, side: str) -> str:
    """An unknown position may be an entry LOMS marked rejected that filled after all: name it."""
    since = timezone.now() - timedelta(days=1)
    late = []
    for order in Order.objects.filter(
        purpose=OrderPurpose.ENTRY, status=OrderStatus.REJECTED, symbol=symbol, side=side, created_at__gte=since
    ).exclude(client_order_id=None)[:5]:
        try:
            fill = broker.lookup(symbol=symbol, client_order_id=order.client_order_id)
        except BrokerError:
            continue
        if fill.qty > 0:
            late.append(
                f"late fill of entry order {order.client_order_id} already marked rejected: {fill.qty} at {fill.price}"
            )
    return f" ({'; '.join(late)})" if late else ""


# --- flatten -------------------------------------------------------------------------------------
@dataclass
class FlattenResult:
    flat: bool
    closed: list[int] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # what → why
    remaining_positions: list[str] = field(default_factory=list)
    remaining_orders: int = 0
    remaining_in_loms: list[str] = field(default_factory=list)  # positions / orders LOMS still shows open
    seconds: float = 0.0
    checked: str = "the exchange and LOMS"


def _open_in_loms() -> list[str]:
    """What LOMS still shows open after a flatten: positions and orders in flight."""
    open_positions = [
        f"position {p.pk} {p.symbol} {p.side} {p.qty} ({p.broker_mode})" for p in Position.objects.open().order_by("pk")
    ]
    in_flight = [
        f"order {o.client_order_id} {o.status}"
        for o in Order.objects.filter(status=OrderStatus.SUBMITTED, position__status=PositionStatus.OPEN)
    ]
    return open_positions + in_flight


def flatten(*, actor: str, reason: str = "flatten", source: str = SwitchSource.COMMAND, user=None) -> FlattenResult:
    """Switch off, cancel every open order, close every position reduce-only, read the exchange
    back. `flat` only when the exchange confirms no position and no open order AND LOMS shows no
    open position and no order in flight (a close that failed in LOMS is not flat)."""
    started = time.perf_counter()
    oms_switch_set(enabled=False, actor=actor, reason=f"flatten: {reason}", source=source, user=user)
    operator = Operator(
        actor=actor, source=SWITCH_TO_OPERATOR_SOURCE.get(source, OperatorSource.COMMAND), user=user, reason=reason
    )
    broker = get_broker()
    result = FlattenResult(flat=False)
    if broker.is_paper:
        from oms.services.positions import positions_close_all

        closed = positions_close_all(reason=CloseReason.FLATTEN, operator=operator, via="flatten")
        result.closed = [p.pk for p in closed.closed]
        result.failed = {s: f"no price: {r}" for s, r in closed.failed.items()}
        result.failed.update({f"position {pk}": why for pk, why in closed.failed_positions.items()})
        result.remaining_in_loms = _open_in_loms()
        result.flat = not result.remaining_in_loms
        result.checked = "LOMS (paper mode: no exchange)"
        result.seconds = time.perf_counter() - started
        _flatten_record(operator, result)
        return result
    try:
        _with_backoff(broker.cancel_all)
    except BrokerError as exc:
        result.failed["cancel all orders"] = exc.message
    for position in Position.objects.open().exclude(broker_mode=BrokerMode.PAPER):
        try:
            closed = exchange_position_close(position=position, reason=CloseReason.FLATTEN)
            if closed.closed_now:
                result.closed.append(position.pk)
                operator.record(
                    "close", position=closed.position, details=position_close_details(closed.position, via="flatten")
                )
        except (BrokerError, ExchangeCloseFailed) as exc:
            result.failed[f"position {position.pk}"] = exc.message
    try:
        # Anything the exchange still holds (unknown to LOMS, or a failed close) is closed too.
        for held in broker.positions():
            try:
                _with_backoff(
                    lambda held=held: broker.close(
                        symbol=held.symbol,
                        side=held.side,
                        qty=held.qty,
                        price=None,
                        client_order_id=f"loms-flat-{int(time.time() * 1000) % 10**12}",
                    )
                )
            except BrokerError as exc:
                result.failed[f"{held.symbol} {held.side} on the exchange"] = exc.message
        result.remaining_positions = [f"{p.symbol} {p.side} {p.qty}" for p in broker.positions()]
        result.remaining_orders = len(broker.open_orders())
        result.remaining_in_loms = _open_in_loms()
        # Flat only when the exchange AND LOMS hold no open position and no open order.
        result.flat = not result.remaining_positions and result.remaining_orders == 0 and not result.remaining_in_loms
    except BrokerError as exc:
        result.failed["reading the exchange back"] = exc.message
        result.remaining_in_loms = _open_in_loms()
    result.seconds = time.perf_counter() - started
    log_event(
        logger,
        "flatten",
        flat=result.flat,
        closed=result.closed,
        failed=result.failed,
        remaining=result.remaining_positions,
        seconds=round(result.seconds, 3),
    )
    if not result.flat:
        broker_alert(
            f"flatten did not confirm flat: {result.remaining_positions or result.remaining_in_loms or result.failed}"
        )
    _flatten_record(operator, result)
    return result


def _flatten_record(operator: Operator, result: FlattenResult) -> None:
    operator.record(
        "flatten",
        details={
            "flat": result.flat,
            "closed_ids": result.closed,
            "failed": result.failed,
            "remaining_positions": result.remaining_positions,
            "remaining_orders": result.remaining_orders,
        },
    )


# --- preflight -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreflightCheck:
    name: str
    ok: bool
    detail: str


def preflight(*, broker: Broker | None = None) -> list[PreflightCheck]:
    """Read-only checks before trading on an exchange (docs/LIVE.md). Never places an order."""
    broker = broker or get_broker()
    checks: list[PreflightCheck] = []
    add = lambda name, ok, detail: checks.append(PreflightCheck(name, bool(ok), detail))  # noqa: E731
    add("broker mode", not broker.is_paper, f"BROKER_MODE={settings.BROKER_MODE}, exchange {broker.name}")
    if broker.is_paper:
        return checks
    symbols = list(settings.SYMBOL_ALLOWLIST)
    add("symbol allowlist", symbols, ", ".join(symbols) or "SYMBOL_ALLOWLIST is empty")
    try:
        account = broker.account_check(symbols)
    except BrokerError as exc:
        add("keys work (balance read)", False, exc.message)
        return checks
    add("keys work (balance read)", True, f"equity {account.equity_usdt} USDT")
    add(
        "no withdraw permission",
        account.withdraw_permission is not True,
        "key can withdraw: make a key without it"
        if account.withdraw_permission
        else ("not reported by the exchange" if account.withdraw_permission is None else "no withdraw"),
    )
    add(
        "account equity within LIVE_MAX_ACCOUNT_USDT",
        account.equity_usdt is not None and account.equity_usdt <= settings.LIVE_MAX_ACCOUNT_USDT,
        f"{account.equity_usdt} USDT (max {settings.LIVE_MAX_ACCOUNT_USDT}): use a dedicated sub-account",
    )
    add(
        "one-way position mode",
        account.one_way_mode is not False,
        "one-way" if account.one_way_mode is not False else "hedge mode: switch the account to one-way",
    )
    for symbol in symbols:
        entry = account.symbols.get(symbol, {})
        ok = entry.get("margin_mode") == settings.LIVE_MARGIN_MODE and entry.get("leverage") == settings.LIVE_LEVERAGE
        add(
            f"{symbol} margin mode and leverage",
            ok,
            f"{entry.get('margin_mode')} x{entry.get('leverage')} (want {settings.LIVE_MARGIN_MODE} "
            f"x{settings.LIVE_LEVERAGE})",
        )
        try:
            broker.market(symbol) if hasattr(broker, "market") else None
        except (EntryRefused, BrokerError) as exc:
            add(f"{symbol} market", False, getattr(exc, "message", str(exc)))
    try:
        known = {(p.symbol, p.side) for p in Position.objects.open().exclude(broker_mode=BrokerMode.PAPER)}
        unknown = [f"{p.symbol} {p.side}" for p in broker.positions() if (p.symbol, p.side) not in known]
        ours = set(Order.objects.exclude(client_order_id=None).values_list("client_order_id", flat=True))
        stray = [
            o["client_order_id"] or o["exchange_order_id"]
            for o in broker.open_orders()
            if o.get("client_order_id") not in ours
        ]
    except BrokerError as exc:
        add("no unknown position or order", False, exc.message)
    else:
        add(
            "no unknown position or order",
            not unknown and not stray,
            "none" if not unknown and not stray else f"positions: {unknown}, orders: {stray}",
        )
    return checks


def reconcile_report() -> dict:
    monitor = BrokerMonitor.load()
    age = (timezone.now() - monitor.last_run_at).total_seconds() if monitor.last_run_at else None
    return {
        "last_run_at": monitor.last_run_at.isoformat() if monitor.last_run_at else None,
        "last_run_age_sec": round(age, 1) if age is not None else None,
        "state": monitor.last_state or "never",
        "detail": monitor.last_detail,
        "runs": monitor.runs,
        "closed_by_exchange": monitor.closed_by_exchange,
        "stale": age is None or age > 3 * settings.RECONCILE_INTERVAL_SEC + 30,
    }
