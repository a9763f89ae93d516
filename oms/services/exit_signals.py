"""The bot's exit and stop signals (issue #12 §1, docs/CONTRACT.md §2a): `POST /signals/exit` closes
the open position it names, wholly or a fraction of it; `POST /signals/stop` moves its stop loss.

They keep the rules of `/signals/bounce` (oms/services/signals.py): every body is a `Signal` row
(`kind` exit or stop) with its outcome and the answer given, plus one audit line after the commit;
a duplicate (same `signal_id` / `Idempotency-Key`, else the same body and timestamp) is answered as
the first one was. Unlike an entry, they are carried out while the OMS switch is off: they only
reduce risk (a stop may loosen only when the signal says so).

The dedupe key is claimed first, by committing the row as `received`; only then is the signal
carried out, and the row updated with its outcome. Two copies of one partial exit arriving together
therefore close once. A signal that could not be carried out for a passing reason (no usable price,
the exchange refused) is `failed`: its key is released so that the bot may send it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.exceptions import ExchangeStopFailed, OmsError, PositionCloseFailed, PriceUnavailable
from oms.models import CloseReason, Order, OrderPurpose, OrderStatus, Position, Signal, SignalKind, SignalOutcome
from oms.selectors import open_positions_matching, position_get, signal_by_dedupe_key
from oms.services.audit import audit_append
from oms.services.closing import CloseInstruction
from oms.services.positions import position_close_at_market
from oms.services.signals import IntakeResult, payload_for_storage, signal_reject
from oms.services.stops import position_stop_move
from oms.signal_input import (
    ExitSignal,
    PositionTarget,
    SignalInvalid,
    StopSignal,
    parse_exit_signal,
    parse_stop_signal,
)

logger = logging.getLogger("loms.oms")


@dataclass(frozen=True)
class Decision:
    """What became of a signal: its outcome, the position it was about and the answer's own fields."""

    outcome: str
    position: Position | None = None
    reason: str = ""
    answer: dict = field(default_factory=dict)
    status_code: int = 200


def exit_signal_ingest(*, payload: object, idempotency_key: str | None = None) -> IntakeResult:
    """Handle one exit signal end to end: close the position it names (or a fraction of it)."""
    return _ingest(SignalKind.EXIT, payload, idempotency_key, parse_exit_signal, _exit)


def stop_signal_ingest(*, payload: object, idempotency_key: str | None = None) -> IntakeResult:
    """Handle one stop signal end to end: move the stop loss of the position it names."""
    return _ingest(SignalKind.STOP, payload, idempotency_key, parse_stop_signal, _stop)


def _ingest(
    kind: str,
    payload: object,
    idempotency_key: str | None,
    parse: Callable[..., ExitSignal | StopSignal],
    carry_out: Callable[..., Decision],
) -> IntakeResult:
    stored_payload = payload_for_storage(payload)
    try:
        signal = parse(payload, idempotency_key=idempotency_key)
    except SignalInvalid as exc:
        return signal_reject(stored_payload, exc.errors, kind=kind)
    log_event(logger, f"{kind}_signal_received", target=signal.target.describe(), signal_id=signal.signal_id)
    row, status_code = None, 200
    try:
        row, first = _claim(kind, signal, stored_payload)
        if first is None:
            decision = carry_out(signal)
            row, status_code = _record(row, decision), decision.status_code
    except Exception as exc:
        if row is not None and row.outcome == SignalOutcome.RECEIVED:
            _record(row, Decision(SignalOutcome.FAILED, reason=f"error: {type(exc).__name__}", status_code=500))
        audit_append({"outcome": "error", "error": type(exc).__name__, "payload": stored_payload})
        raise
    audit_append(
        {
            "signal_row_id": row.pk,
            "kind": kind,
            "outcome": row.outcome,
            "reason": row.reason,
            "dedupe_key": signal.dedupe_key,
            "payload": stored_payload,
            "response": row.response,
        }
    )
    return IntakeResult(status_code=status_code, body=row.response, signal=row)


def _claim(kind: str, signal: ExitSignal | StopSignal, payload: dict) -> tuple[Signal, Signal | None]:
    """The signal's row, committed as `received` with its dedupe key; or, when that key is taken, a
    row recording the duplicate and the first signal."""
    target = signal.target
    fields = {
        "kind": kind,
        "payload": payload,
        "symbol": target.symbol or "",
        "side": target.side or "",
        "strategy": target.strategy or "",
        "exchange": target.exchange or "",
    }
    first = signal_by_dedupe_key(signal.dedupe_key)
    if first is not None and _release_stale_claim(first):
        first = None
    if first is None:
        try:
            with transaction.atomic():
                row = Signal.objects.create(
                    **fields,
                    outcome=SignalOutcome.RECEIVED,
                    dedupe_key=signal.dedupe_key,
                    response={"received": True, "outcome": SignalOutcome.RECEIVED},
                )
            return row, None
        except IntegrityError:  # a concurrent twin claimed the key after our check: we are its duplicate
            first = signal_by_dedupe_key(signal.dedupe_key)
            if first is None:
                raise
    duplicate = Signal.objects.create(
        **fields,
        outcome=SignalOutcome.DUPLICATE,
        reason=f"duplicate of signal {first.pk}",
        duplicate_of=first,
        position=first.position,
        response={**first.response, "duplicate": True},
    )
    return duplicate, first


# A claim still `received` after this long was left by a worker that died before recording what it
# did (a gunicorn timeout, an OOM kill): far above the worker timeout and an exchange order's wait.
STALE_CLAIM = timedelta(minutes=5)


def _release_stale_claim(first: Signal) -> bool:
    """Release the key of a claim left `received` by a dead worker, so the signal can be carried out
    now; True when released. Never while an exit order sent since the claim is still unresolved
    (the reconciliation settles it first: the exit may have happened)."""
    if first.outcome != SignalOutcome.RECEIVED or first.received_at > timezone.now() - STALE_CLAIM:
        return False
    with transaction.atomic():
        stale = Signal.objects.select_for_update().filter(pk=first.pk, outcome=SignalOutcome.RECEIVED).first()
        if stale is None:
            return False
        in_flight = Order.objects.filter(
            purpose=OrderPurpose.EXIT, status=OrderStatus.SUBMITTED, created_at__gte=stale.received_at
        ).exists()
        if in_flight:
            return False
        reason = "never carried out: the worker that claimed it stopped; released for a resend"
        _record(stale, Decision(SignalOutcome.FAILED, reason=reason, status_code=500))
    log_event(logger, "signal_claim_released", logging.WARNING, signal_row_id=first.pk)
    return True


def _record(row: Signal, decision: Decision) -> Signal:
    """The outcome written on the claimed row. A failed signal releases its dedupe key (it may be resent)."""
    position = decision.position
    row.outcome, row.reason, row.position = decision.outcome, decision.reason, position
    if position is not None:
        row.symbol, row.side, row.strategy, row.exchange = (
            position.symbol,
            position.side,
            position.strategy,
            position.exchange,
        )
    row.response = {
        "received": decision.outcome != SignalOutcome.REJECTED,
        "outcome": decision.outcome,
        "position_id": position.pk if position else None,
        **({"reason": decision.reason} if decision.reason else {}),
        **decision.answer,
    }
    if decision.outcome in (SignalOutcome.FAILED, SignalOutcome.REJECTED):
        row.dedupe_key = None
    row.save(
        update_fields=[
            "outcome",
            "reason",
            "position",
            "symbol",
            "side",
            "strategy",
            "exchange",
            "response",
            "dedupe_key",
        ]
    )
    return row


def _match(target: PositionTarget) -> Position | Decision:
    """The open position a signal names, or the outcome when there is none or more than one."""
    if target.position_id is not None:
        try:
            position = position_get(target.position_id)
        except Position.DoesNotExist:
            return Decision(SignalOutcome.NO_MATCH, reason=f"position {target.position_id} does not exist")
        given = {"symbol": target.symbol, "side": target.side, "strategy": target.strategy}
        differ = [
            f"{name}={getattr(position, name)}"
            for name, value in given.items()
            if value and value != getattr(position, name)
        ]
        if differ:
            return Decision(
                SignalOutcome.NO_MATCH,
                reason=f"position {position.pk} has {', '.join(differ)}: not the position the signal describes",
            )
        if not position.is_open:
            return _already_closed(position)
        return position
    matches = open_positions_matching(
        symbol=target.symbol, side=target.side, strategy=target.strategy, exchange=target.exchange
    )
    if not matches:
        return Decision(SignalOutcome.NO_MATCH, reason=f"no open position with {target.describe()}")
    if len(matches) > 1:
        ids = [p.pk for p in matches]
        return Decision(
            SignalOutcome.AMBIGUOUS,
            reason=f"{len(ids)} open positions match {target.describe()}: send the position_id of one",
            answer={"position_ids": ids},
        )
    return matches[0]


def _already_closed(position: Position) -> Decision:
    return Decision(
        SignalOutcome.ALREADY_CLOSED,
        position=position,
        reason=f"position {position.pk} is already {position.status}",
        answer={"status": position.status, "auto_close_reason": position.auto_close_reason},
    )


def _failed(position: Position, exc: OmsError) -> Decision:
    """Not carried out for a reason that may pass (no usable price, the exchange refused): answered
    with the error's status and code, as the other endpoints answer it."""
    return Decision(
        SignalOutcome.FAILED,
        position=position,
        reason=exc.message,
        answer={"error": exc.code, "detail": exc.message},
        status_code=exc.status_code,
    )


def _exit(signal: ExitSignal) -> Decision:
    match = _match(signal.target)
    if isinstance(match, Decision):
        return match
    if CloseInstruction(match.pk, Decimal("0"), CloseReason.SIGNAL, fraction=signal.fraction).exit_qty(match.qty) <= 0:
        reason = f"fraction {signal.fraction} of the open qty {match.qty} closes nothing"
        return Decision(SignalOutcome.REJECTED, match, reason, {"errors": {"fraction": [reason]}}, status_code=400)
    try:
        result = position_close_at_market(position_id=match.pk, reason=CloseReason.SIGNAL, fraction=signal.fraction)
    except (PriceUnavailable, PositionCloseFailed) as exc:  # ExchangeCloseFailed is a PriceUnavailable
        booked = Position.objects.get(pk=match.pk)
        if booked.closed_qty > match.closed_qty:  # an exchange order filled in part: that part is done
            return _partially_closed(booked, booked.closed_qty - match.closed_qty, reason=exc.message)
        return _failed(match, exc)
    position = result.position
    if not result.exited_qty:  # the sweep, a person or another exit closed it first
        return _already_closed(position)
    if not result.closed_now:
        return _partially_closed(position, result.exited_qty)
    answer = {"closed_qty": float(result.exited_qty), "remaining_qty": 0.0}
    answer.update(close_price=float(position.close_price), pnl=float(position.pnl))
    return Decision(SignalOutcome.CLOSED, position=position, answer=answer)


def _partially_closed(position: Position, closed_qty: Decimal, reason: str = "") -> Decision:
    answer = {
        "closed_qty": float(closed_qty),
        "remaining_qty": float(position.qty),
        "realized_pnl": float(position.realized_pnl),
    }
    return Decision(SignalOutcome.PARTIALLY_CLOSED, position=position, reason=reason, answer=answer)


def _stop(signal: StopSignal) -> Decision:
    match = _match(signal.target)
    if isinstance(match, Decision):
        return match
    try:
        result = position_stop_move(position_id=match.pk, sl_price=signal.sl_price, allow_loosen=signal.allow_loosen)
    except ExchangeStopFailed as exc:
        return _failed(match, exc)
    position = result.position
    if not position.is_open:
        return _already_closed(position)
    answer = {
        "sl_price": _number(position.sl_price),
        "previous_sl_price": _number(result.previous_sl_price),
        "sl_price_in_force": _number(result.sl_price_in_force),
    }
    if not result.moved:
        return Decision(SignalOutcome.NOT_MOVED, position=position, reason=result.refused, answer=answer)
    return Decision(SignalOutcome.STOP_MOVED, position=position, answer=answer)


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)
