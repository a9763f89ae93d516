"""Stuck positions (issue #12 §7): a paper position whose symbol has no usable price (delisted, the
exchange gone) cannot be closed at market. An operator closes it at a price they enter (reason
`manual_price`: a trade, with PnL, counted apart in the stats) or voids it (status cancelled, reason
`void`: no price, no PnL, not a trade, counted as `voided_count`).

Both go through the one close path (`closing.close_positions`: row lock, conditional UPDATE), so a
settle racing the sweep or a close books exactly one of them, and are recorded in the operator
audit in the same transaction. Refused while the symbol has a usable quote (use the normal close)
and for demo/live exchange positions (the exchange is the truth: close there, the reconciliation
books it).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from oms.amounts import amount_error
from oms.exceptions import PositionCloseFailed, PositionNotFound, PriceUnavailable, SettleRefused
from oms.models import BrokerMode, CloseReason, Position
from oms.pnl import fee_for
from oms.services.closing import CloseInstruction, close_positions
from oms.services.operator_audit import Operator, position_close_details
from oms.services.positions import CloseResult, market_price


class SettleInvalid(ValueError):
    """The settle request itself is wrong (both or neither of price and void, no reason, a bad price)."""


def position_settle(
    *, position_id: int, price: Decimal | None, void: bool, operator: Operator, now: datetime | None = None
) -> CloseResult:
    """Close a stuck paper position at `price` (reason `manual_price`) or void it (`void=True`).
    An already closed position is returned as is (`closed_now` False), and nothing is recorded."""
    if void == (price is not None):
        raise SettleInvalid("give either a price or void, not both")
    if not operator.reason.strip():
        raise SettleInvalid("a reason is required (it is recorded in the operator audit)")
    if price is not None and (error := amount_error(price)):
        raise SettleInvalid(f"price: {error}")
    try:
        position = Position.objects.get(pk=position_id)
    except Position.DoesNotExist:
        raise PositionNotFound(f"position {position_id} does not exist") from None
    if not position.is_open:
        return CloseResult(position=position, closed_now=False)
    if position.broker_mode != BrokerMode.PAPER:
        raise SettleRefused(
            f"position {position.pk} is on the exchange ({position.broker_mode}): the exchange is the "
            "truth, close it there (the reconciliation books it) or with the normal close",
            code="exchange_position",
        )
    try:
        market_price(position.symbol)
    except PriceUnavailable:
        pass  # stuck: this is what settle is for
    else:
        raise SettleRefused(f"{position.symbol} has a usable price: use the normal close", code="price_available")
    if void and position.closed_qty:
        raise SettleRefused(
            f"position {position.pk} has partial exits that realised PnL: voiding it would drop them; "
            "close it at a price you enter instead",
            code="partially_closed",
        )
    if void:
        instruction = CloseInstruction(position.pk, None, CloseReason.VOID, void=True)
    else:  # the operator's price as is (no paper slippage), the paper exit fee on it
        fee = fee_for(price=price, qty=position.qty, rate=settings.PAPER_FEE_RATE)
        instruction = CloseInstruction(position.pk, price, CloseReason.MANUAL_PRICE, fill_fee=fee)
    with transaction.atomic():
        outcome = close_positions([instruction], now=now)
        if outcome.failed:
            raise PositionCloseFailed(f"position {position.pk} could not be settled: {outcome.failed[position.pk]}")
        if not outcome.closed:  # the sweep or a close got there first
            position.refresh_from_db()
            return CloseResult(position=position, closed_now=False)
        settled = outcome.closed[0]
        operator.record(
            "void" if void else "settle_price", position=settled, details=position_close_details(settled, via="settle")
        )
    return CloseResult(position=settled, closed_now=True)
