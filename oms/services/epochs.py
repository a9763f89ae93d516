"""Paper epochs: a named book (the positions' `account_label`) that new positions are booked in.

Starting a new epoch keeps every earlier position; reports and stats filter by epoch. Each epoch
has a starting capital (`Epoch`, else STARTING_CAPITAL_USDT): its equity, that capital plus its
closed trades' net PnL, is what RISK_PER_TRADE_PCT sizes signals by (`oms/services/sizing.py`).
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.amounts import amount_error
from oms.models import Epoch, OmsControl, Position, PositionStatus
from oms.selectors import epoch_equity
from oms.services.book import book_changed
from oms.services.operator_audit import operator_action_record

logger = logging.getLogger("loms.oms")
EPOCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def epoch_current() -> str:
    return OmsControl.load().epoch


def _starting_capital(name: str, capital: Decimal | None) -> Decimal:
    """The capital `name` starts (or resumes) with, recording it when the epoch has none yet."""
    if capital is not None and (error := amount_error(capital)):
        raise ValueError(f"the starting capital: {error}")
    recorded = Epoch.objects.filter(name=name).values_list("starting_capital", flat=True).first()
    if recorded is not None:
        if capital is not None and capital != recorded:
            raise ValueError(f"epoch {name!r} already started with a capital of {recorded.normalize():f} USDT")
        return recorded
    capital = capital if capital is not None else settings.STARTING_CAPITAL_USDT
    Epoch.objects.create(name=name, starting_capital=capital)
    return capital


@transaction.atomic
def epoch_start(
    *,
    name: str,
    actor: str,
    capital: Decimal | None = None,
    source: str = "command",
    user=None,
    reason: str = "",
) -> tuple[str, str]:
    """Book new positions under `name` from now on, with `capital` (default STARTING_CAPITAL_USDT) as
    its starting capital (recorded in the operator audit). Returns (previous, new)."""
    name = name.strip()
    if not EPOCH_NAME.fullmatch(name):
        raise ValueError("an epoch name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    OmsControl.load()
    # Locked like a position open, so no open straddles the change.
    control = OmsControl.objects.select_for_update().get(pk=1)
    previous = control.epoch
    capital = _starting_capital(name, capital)
    control.epoch, control.epoch_started_at = name, timezone.now()
    control.save(update_fields=["epoch", "epoch_started_at"])
    book_changed()  # the figures cached for "the current epoch" (its equity) are stale
    log_event(logger, "epoch_started", epoch=name, previous=previous, actor=actor, starting_capital=capital)
    operator_action_record(
        actor=actor,
        source=source,
        user=user,
        action="epoch",
        reason=reason,
        details={"previous": previous, "epoch": name, "starting_capital": f"{capital.normalize():f}"},
    )
    return previous, name


def epochs_summary() -> list[dict]:
    """Every epoch seen in the positions, with counts, dates and equity figures, oldest first."""
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
    summary = []
    for row in rows:
        epoch = row.pop("account_label")
        summary.append({**epoch_equity(epoch), **row})  # "epoch", its capital, equity and return, counts
    return summary
