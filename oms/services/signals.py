"""Signal intake: validate, deduplicate, honour the switch and the risk limits, open, audit."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from functools import partial

from django.db import IntegrityError, transaction

from lomsite.groupcommit import group_commit
from lomsite.jsonlog import log_event
from lomsite.rowsql import row_insert
from oms.exceptions import OmsDisabled, RiskLimitExceeded
from oms.models import BrokerMode, Signal, SignalKind, SignalOutcome
from oms.pnl import levels_from_pct
from oms.selectors import signal_by_dedupe_key
from oms.services.audit import audit_append
from oms.services.execution import entry_execute, pretrade_sanity
from oms.services.positions import OpenedPosition, PositionRequest, lock_oms_control, position_open_locked
from oms.services.switch import switch_state
from oms.signal_input import QUANT, BounceSignal, SignalInvalid, parse_bounce_signal

logger = logging.getLogger("loms.oms")


@dataclass(frozen=True)
class IntakeResult:
    status_code: int
    body: dict
    signal: Signal


def payload_for_storage(payload: object) -> dict:
    """The body as it can be stored and audited: a JSON object; NUL characters and lone surrogates
    (which PostgreSQL text and jsonb refuse) replaced by U+FFFD; numbers that overflowed to infinity
    (and NaN), which JSON cannot hold, replaced by the strings "Infinity", "-Infinity", "NaN"."""
    return _storable(payload) if isinstance(payload, dict) else {"raw": _storable(str(payload)[:2000])}


NOT_STORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value):
    if isinstance(value, str):
        return NOT_STORABLE.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {_storable(str(key)): _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    return value


def _request_for(signal: BounceSignal) -> PositionRequest:
    tp_price, sl_price = levels_from_pct(
        side=signal.side, price=signal.price, tp_pct=signal.tp_pct, sl_pct=signal.sl_pct
    )
    return PositionRequest(
        symbol=signal.symbol,
        side=signal.side,
        qty=signal.qty,
        entry_price=signal.price,
        tp_price=tp_price.quantize(QUANT),
        sl_price=sl_price.quantize(QUANT),
        exchange=signal.exchange,
        strategy=signal.strategy,
        timeframe_min=signal.timeframe_min,
        exit_strategy=signal.exit_strategy,
        external_order_id=signal.signal_id or "",
        size_by_risk=True,
    )


def _signal_fields(signal: BounceSignal, payload: dict) -> dict:
    return {
        "payload": payload,
        "symbol": signal.symbol,
        "side": signal.side,
        "strategy": signal.strategy,
        "exchange": signal.exchange,
    }


def _record_duplicate(signal: BounceSignal, payload: dict, first: Signal) -> Signal:
    """A signal already seen: recorded (no dedupe key of its own), answered as the first one was."""
    return Signal.objects.create(
        **_signal_fields(signal, payload),
        outcome=SignalOutcome.DUPLICATE,
        reason=f"duplicate of signal {first.pk}",
        duplicate_of=first,
        response={**first.response, "duplicate": True},
    )


def _decide_and_record(signal: BounceSignal, payload: dict, insane: str = "") -> Signal:
    """In this process's write batch (lomsite/groupcommit.py) behind the OMS lock: switch? risk? then open.

    Duplicates were answered before taking the lock; a twin committed since then (or earlier in the
    same batch) makes the final insert fail on the unique dedupe key (IntegrityError), which rolls
    all of this back to its savepoint.
    """
    control = lock_oms_control()
    fields = _signal_fields(signal, payload)
    try:
        if insane and switch_state(control).enabled:  # BROKER (#11): pre-trade sanity (stale, price far off)
            raise RiskLimitExceeded(insane, "sanity")
        opened = position_open_locked(request=_request_for(signal), control=control)
    except OmsDisabled as exc:
        outcome, reason, position = SignalOutcome.OMS_DISABLED, exc.message, None
        response = {"received": True, "oms_enabled": False, "risk_ok": False, "reason": exc.message}
    except RiskLimitExceeded as exc:
        outcome, reason, position = SignalOutcome.RISK_BLOCKED, exc.message, None
        response = {"received": True, "oms_enabled": True, "risk_ok": False, "risk_reason": exc.message}
    else:
        outcome, reason, position = SignalOutcome.OPENED, "", opened.position
        response = {
            "received": True,
            "oms_enabled": True,
            "risk_ok": True,
            "order_id": opened.order.pk,
            "position_id": opened.position.pk,
            "tp_price": float(opened.position.tp_price),
            "sl_price": float(opened.position.sl_price),
            "qty": float(opened.position.qty),
        }
    return row_insert(
        Signal(
            **fields, outcome=outcome, reason=reason, dedupe_key=signal.dedupe_key, position=position, response=response
        )
    )


def signal_ingest(*, payload: object, idempotency_key: str | None = None) -> IntakeResult:
    """Handle one bounce signal end to end. The Signal row, order and position commit together."""
    stored_payload = payload_for_storage(payload)
    try:
        signal = parse_bounce_signal(payload, idempotency_key=idempotency_key)
    except SignalInvalid as exc:
        return signal_reject(stored_payload, exc.errors)
    log_event(
        logger,
        "bounce_received",
        symbol=signal.symbol,
        side=signal.side,
        price=signal.price,
        strategy=signal.strategy,
        signal_id=signal.signal_id,
    )
    try:
        # Checked outside the OMS lock so duplicates never queue for it (the lock is the throughput limit).
        first = signal_by_dedupe_key(signal.dedupe_key)
        if first is not None:
            row = _record_duplicate(signal, stored_payload, first)
        else:
            insane = pretrade_sanity(symbol=signal.symbol, price=signal.price, timestamp=signal.timestamp)
            try:
                row = group_commit(partial(_decide_and_record, signal, stored_payload, insane))
            except IntegrityError:
                # A concurrent twin won the unique dedupe key after our check: we are its duplicate.
                first = signal_by_dedupe_key(signal.dedupe_key)
                if first is None:
                    raise
                row = _record_duplicate(signal, stored_payload, first)
        if row.outcome == SignalOutcome.OPENED and row.position and row.position.broker_mode != BrokerMode.PAPER:
            row = entry_execute(row)  # BROKER (#11): the order goes to the exchange after the commit
    except Exception as exc:
        audit_append({"outcome": "error", "error": type(exc).__name__, "payload": stored_payload})
        raise
    audit_append(
        {
            "signal_row_id": row.pk,
            "outcome": row.outcome,
            "reason": row.reason,
            "dedupe_key": signal.dedupe_key,
            "payload": stored_payload,
            "response": row.response,
        }
    )
    return IntakeResult(status_code=200, body=row.response, signal=row)


def signal_reject_unreadable(*, raw: bytes | str, errors: dict, kind: str = SignalKind.ENTRY) -> IntakeResult:
    """A body that is not even JSON (malformed, NaN, nested too deep, too large): recorded as a
    rejected signal with the start of the raw text, and answered 400 like any invalid signal."""
    if isinstance(raw, bytes):
        raw = raw[:2000].decode("utf-8", errors="replace")
    return signal_reject({"raw": _storable(raw[:2000])}, errors, kind=kind)


def signal_reject(payload: dict, errors: dict, *, kind: str = SignalKind.ENTRY) -> IntakeResult:
    errors = _storable(errors)  # messages may quote the bad input
    body = {"received": False, "errors": errors}
    row = Signal.objects.create(
        kind=kind,
        payload=payload,
        symbol=str(payload.get("symbol", ""))[:30],
        side=str(payload.get("side", ""))[:5],
        outcome=SignalOutcome.REJECTED,
        reason="; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in errors.items()),
        response=body,
    )
    audit_append({"signal_row_id": row.pk, "outcome": row.outcome, "reason": row.reason, "payload": payload})
    log_event(logger, "signal_rejected", level=logging.WARNING, reason=row.reason)
    return IntakeResult(status_code=400, body=body, signal=row)


def order_open(*, request: PositionRequest, payload: object, actor: str = "") -> OpenedPosition:
    """`POST /orders`: open a position like a signal does, with its ledger row and audit line.

    The position, its entry order and a `Signal` row (outcome `opened`, reason `POST /orders by
    <user>`) commit together; the audit line is appended after the commit, as for any signal.
    """
    stored_payload = payload_for_storage(payload)
    with transaction.atomic():
        opened = position_open_locked(request=request, control=lock_oms_control())
        position = opened.position
        response = {
            "received": True,
            "oms_enabled": True,
            "risk_ok": True,
            "order_id": opened.order.pk,
            "position_id": position.pk,
            "tp_price": float(position.tp_price) if position.tp_price is not None else None,
            "sl_price": float(position.sl_price) if position.sl_price is not None else None,
        }
        row = Signal.objects.create(
            payload=stored_payload,
            symbol=position.symbol,
            side=position.side,
            strategy=position.strategy,
            exchange=position.exchange,
            outcome=SignalOutcome.OPENED,
            position=position,
            response=response,
            reason=f"POST /orders by {actor}" if actor else "POST /orders",
        )
    audit_append(
        {
            "signal_row_id": row.pk,
            "outcome": row.outcome,
            "reason": row.reason,
            "source": "orders_api",
            "payload": stored_payload,
            "response": response,
        }
    )
    return opened
