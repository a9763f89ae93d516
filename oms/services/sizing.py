"""Sizing a signal by risk (issue #12 §4): RISK_PER_TRADE_PCT of the epoch's equity down to the stop.

Runs inside the opening transaction behind the OMS lock (`positions.position_open_locked`), before
the exchange rounds the qty to its lot (demo/live) and before the risk limits check it: the equity
is two reads by key (`oms.selectors.epoch_equity`), the exposure the snapshot already taken.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings

from lomsite.jsonlog import log_event
from oms.amounts import MAX_NOTIONAL, QUANT
from oms.exceptions import RiskLimitExceeded
from oms.selectors import epoch_equity
from risk.limits import ExposureSnapshot, RiskLimits
from risk.sizing import size_by_risk

logger = logging.getLogger("loms.risk")


def risk_sized_qty(
    *,
    epoch: str,
    entry_price: Decimal,
    sl_price: Decimal | None,
    limits: RiskLimits,
    exposure: ExposureSnapshot,
    strategy_room: Decimal | None = None,
) -> Decimal:
    """The qty that risks RISK_PER_TRADE_PCT of `epoch`'s equity, capped so its notional fits
    MAX_SIZE_PER_POSITION_USDT (demo/live: also LIVE_MAX_NOTIONAL_USDT), what MAX_TOTAL_EXPOSURE_USDT
    leaves free and what the strategy's own exposure limit leaves free (`strategy_room`); raises
    RiskLimitExceeded (scope `sizing`) without equity or without a stop."""
    ceilings = [MAX_NOTIONAL, limits.max_size_per_position_usdt]  # MAX_NOTIONAL: what the book can hold
    if settings.BROKER_MODE != "paper":
        ceilings.append(settings.LIVE_MAX_NOTIONAL_USDT)
    rooms = [strategy_room]
    if limits.max_total_exposure_usdt is not None:
        rooms.append(limits.max_total_exposure_usdt - exposure.total_open_notional)
    room = min((r for r in rooms if r is not None), default=None)
    decision = size_by_risk(
        equity=epoch_equity(epoch)["equity"],
        risk_pct=settings.RISK_PER_TRADE_PCT,
        entry_price=entry_price,
        stop_price=sl_price,
        qty_step=QUANT,
        max_notional=min(c for c in ceilings if c is not None),
        exposure_room=room,
    )
    if not decision.ok:
        log_event(logger, "risk_block", logging.WARNING, scope="sizing", reason=decision.reason, epoch=epoch)
        raise RiskLimitExceeded(decision.reason, "sizing")
    return decision.qty
