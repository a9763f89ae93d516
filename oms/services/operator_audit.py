"""The operator audit (issue #12 §6): every manual action recorded with who, when, from where, what,
on which position and why. One function, `operator_action_record`, called by the services of each
manual action (close, close all, flatten, switch, epoch, settle) and by the thin call sites that have
no service (set_role, create_api_token, restore, the admin action through the close service).

Moving a stop by hand (`OperatorActionKind.STOP_MOVE`) does not exist yet: its service records it with
`operator_action_record(action=OperatorActionKind.STOP_MOVE, position=..., details={"from": ..., "to": ...})`.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass
from decimal import Decimal

from lomsite.jsonlog import log_event
from oms.amounts import QUANT
from oms.models import OperatorAction, OperatorActionKind, OperatorSource, Position, SwitchSource

logger = logging.getLogger("loms.oms")
MAX_REASON = 1000

# The switch history names its sources as before; the operator audit has one word per place.
SWITCH_TO_OPERATOR_SOURCE = {
    SwitchSource.DASHBOARD: OperatorSource.CONSOLE,
    SwitchSource.ADMIN: OperatorSource.ADMIN,
    SwitchSource.API: OperatorSource.API,
    SwitchSource.COMMAND: OperatorSource.COMMAND,
}


@dataclass(frozen=True)
class Operator:
    """Who acts, from where and why: handed to a service of a manual action, which records it."""

    actor: str
    source: str
    user: object = None
    reason: str = ""

    @classmethod
    def from_request(cls, request, source: str, reason: str = "") -> Operator:
        user = request.user if getattr(request.user, "pk", None) else None
        return cls(actor=user.get_username() if user else "anonymous (dev)", source=source, user=user, reason=reason)

    @classmethod
    def command(cls, actor: str | None = None, reason: str = "") -> Operator:
        return cls(actor=command_actor(actor), source=OperatorSource.COMMAND, reason=reason)

    def record(self, action: str, *, position: Position | None = None, details: dict | None = None) -> OperatorAction:
        return operator_action_record(
            actor=self.actor,
            source=self.source,
            user=self.user,
            action=action,
            position=position,
            reason=self.reason,
            details=details,
        )


def command_actor(actor: str | None = None) -> str:
    """The actor of a management command: the given name, else the OS user, marked `(command)`."""
    return (actor or "").strip() or f"{getpass.getuser()} (command)"


def operator_action_record(
    *,
    actor: str,
    source: str,
    action: str,
    user=None,
    position: Position | None = None,
    reason: str = "",
    details: dict | None = None,
) -> OperatorAction:
    """Record one manual action (inside the caller's transaction when there is one)."""
    if action not in OperatorActionKind.values:
        raise ValueError(f"unknown operator action {action!r}")
    if source not in OperatorSource.values:
        raise ValueError(f"unknown operator source {source!r}")
    row = OperatorAction.objects.create(
        actor=(actor or "unknown")[:150],
        user=user if getattr(user, "pk", None) else None,
        source=source,
        action=action,
        position=position,
        reason=(reason or "").strip()[:MAX_REASON],
        details=details or {},
    )
    log_event(
        logger,
        "operator_action",
        action=action,
        actor=row.actor,
        source=source,
        position_id=position.pk if position else None,
        reason=row.reason,
        details=row.details,
    )
    return row


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else format(Decimal(value).quantize(QUANT), "f")


def position_close_details(position: Position, *, via: str, exited_qty: Decimal | None = None) -> dict:
    """What a manual close (or partial exit: the position is still open) booked, for its audit row
    (amounts as the columns store them)."""
    details = {
        "via": via,
        "close_reason": position.auto_close_reason,
        "symbol": position.symbol,
        "close_price": _amount(position.close_price),
        "pnl": _amount(position.pnl),
    }
    if position.is_open:
        details.update(exited_qty=_amount(exited_qty), qty_open=_amount(position.qty))
    return details
