"""Paper epochs: a named book (the positions' `account_label`) that new positions are booked in.

Starting a new epoch keeps every earlier position; reports and stats filter by epoch.
"""

from __future__ import annotations

import logging
import re

from django.db import transaction
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.models import OmsControl, Position, PositionStatus
from oms.services.operator_audit import operator_action_record

logger = logging.getLogger("loms.oms")
EPOCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def epoch_current() -> str:
    return OmsControl.load().epoch


@transaction.atomic
def epoch_start(*, name: str, actor: str, source: str = "command", user=None, reason: str = "") -> tuple[str, str]:
    """Book new positions under `name` from now on (recorded in the operator audit). Returns (previous, new)."""
    name = name.strip()
    if not EPOCH_NAME.fullmatch(name):
        raise ValueError("an epoch name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    OmsControl.load()
    # Locked like a position open, so no open straddles the change.
    control = OmsControl.objects.select_for_update().get(pk=1)
    previous = control.epoch
    control.epoch, control.epoch_started_at = name, timezone.now()
    control.save(update_fields=["epoch", "epoch_started_at"])
    log_event(logger, "epoch_started", epoch=name, previous=previous, actor=actor)
    operator_action_record(
        actor=actor,
        source=source,
        user=user,
        action="epoch",
        reason=reason,
        details={"previous": previous, "epoch": name},
    )
    return previous, name


def epochs_summary() -> list[dict]:
    """Every epoch seen in the positions, with counts and dates, oldest first."""
    rows = (
        Position.objects.order_by()
        .values("account_label")
        .annotate(
            positions=Count("id"),
            open=Count("id", filter=Q(status=PositionStatus.OPEN)),
            first=Min("created_at"),
            last=Max("created_at"),
        )
        .order_by("first")
    )
    return [{"epoch": row.pop("account_label"), **row} for row in rows]
