"""Pre-trade risk checks: pure functions over an exposure snapshot. No models here.

`oms` gathers the snapshot inside the transaction that will insert the position, so the
check and the insert are one atomic step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings

from lomsite.jsonlog import log_event

logger = logging.getLogger("loms.risk")


@dataclass(frozen=True)
class RiskLimits:
    """Configured limits; None (or an empty list) means "no limit"."""

    max_open_positions: int | None = None
    max_open_positions_per_symbol: int | None = None
    max_size_per_position_usdt: Decimal | None = None
    max_total_exposure_usdt: Decimal | None = None
    symbol_allowlist: tuple[str, ...] = ()
    symbol_denylist: tuple[str, ...] = ()
    max_positions_per_day: int | None = None
    max_positions_per_day_per_symbol: int | None = None
    sl_cooldown_min: int | None = None

    @classmethod
    def from_settings(cls) -> RiskLimits:
        return cls(
            max_open_positions=settings.MAX_OPEN_POSITIONS,
            max_open_positions_per_symbol=settings.MAX_OPEN_POSITIONS_PER_SYMBOL,
            max_size_per_position_usdt=settings.MAX_SIZE_PER_POSITION_USDT,
            max_total_exposure_usdt=settings.MAX_TOTAL_EXPOSURE_USDT,
            symbol_allowlist=tuple(settings.SYMBOL_ALLOWLIST),
            symbol_denylist=tuple(settings.SYMBOL_DENYLIST),
            max_positions_per_day=settings.MAX_POSITIONS_PER_DAY,
            max_positions_per_day_per_symbol=settings.MAX_POSITIONS_PER_DAY_PER_SYMBOL,
            sl_cooldown_min=settings.SL_COOLDOWN_MIN,
        )


@dataclass(frozen=True)
class ExposureSnapshot:
    """What is open and what happened today, as seen inside the opening transaction."""

    total_open: int = 0
    symbol_open: int = 0
    total_open_notional: Decimal = Decimal("0")
    positions_today: int = 0
    symbol_positions_today: int = 0
    last_symbol_sl_at: datetime | None = None
    now: datetime | None = field(default=None)


@dataclass(frozen=True)
class RiskDecision:
    ok: bool
    reason: str = ""
    scope: str = ""


ALLOW = RiskDecision(ok=True)


def _fmt(value: Decimal) -> str:
    return f"{value.normalize():f}" if value == value.to_integral() else f"{value:.2f}"


def evaluate_risk(
    *, symbol: str, entry_price: Decimal, qty: Decimal, exposure: ExposureSnapshot, limits: RiskLimits
) -> RiskDecision:
    """The first limit the new position would break, or ALLOW."""
    if limits.symbol_allowlist and symbol not in limits.symbol_allowlist:
        return RiskDecision(False, f"symbol_not_allowed (symbol={symbol})", "symbol_list")
    if symbol in limits.symbol_denylist:
        return RiskDecision(False, f"symbol_denied (symbol={symbol})", "symbol_list")
    if limits.max_open_positions is not None and exposure.total_open >= limits.max_open_positions:
        return RiskDecision(
            False, f"max_total_open_reached (total={exposure.total_open}, limit={limits.max_open_positions})", "total"
        )
    per_symbol = limits.max_open_positions_per_symbol
    if per_symbol is not None and exposure.symbol_open >= per_symbol:
        return RiskDecision(
            False,
            f"max_symbol_open_reached (symbol={symbol}, count={exposure.symbol_open}, limit={per_symbol})",
            "symbol",
        )
    notional = entry_price * qty
    if limits.max_size_per_position_usdt is not None and notional > limits.max_size_per_position_usdt:
        return RiskDecision(
            False,
            f"max_size_per_position_exceeded (notional={_fmt(notional)}, "
            f"limit={_fmt(limits.max_size_per_position_usdt)})",
            "size",
        )
    exposure_after = exposure.total_open_notional + notional
    if limits.max_total_exposure_usdt is not None and exposure_after > limits.max_total_exposure_usdt:
        return RiskDecision(
            False,
            f"max_total_exposure_exceeded (exposure={_fmt(exposure_after)}, "
            f"limit={_fmt(limits.max_total_exposure_usdt)})",
            "exposure",
        )
    # The reason strings keep their first names: they are on the wire (`risk_reason`, docs/CONTRACT.md).
    if limits.max_positions_per_day is not None and exposure.positions_today >= limits.max_positions_per_day:
        return RiskDecision(
            False,
            f"max_signals_per_day_reached (count={exposure.positions_today}, limit={limits.max_positions_per_day})",
            "daily",
        )
    if (
        limits.max_positions_per_day_per_symbol is not None
        and exposure.symbol_positions_today >= limits.max_positions_per_day_per_symbol
    ):
        return RiskDecision(
            False,
            f"max_symbol_signals_per_day_reached (symbol={symbol}, count={exposure.symbol_positions_today}, "
            f"limit={limits.max_positions_per_day_per_symbol})",
            "daily_symbol",
        )
    if limits.sl_cooldown_min and exposure.last_symbol_sl_at and exposure.now:
        until = exposure.last_symbol_sl_at + timedelta(minutes=limits.sl_cooldown_min)
        if exposure.now < until:
            return RiskDecision(
                False, f"sl_cooldown_active (symbol={symbol}, until={until.isoformat(timespec='seconds')})", "cooldown"
            )
    return ALLOW


def check_risk_limits(
    symbol: str, entry_price: Decimal, qty: Decimal, *, exposure: ExposureSnapshot, limits: RiskLimits | None = None
) -> RiskDecision:
    """Evaluate the configured limits and log a `risk_block` event when one blocks."""
    decision = evaluate_risk(
        symbol=symbol, entry_price=entry_price, qty=qty, exposure=exposure, limits=limits or RiskLimits.from_settings()
    )
    if not decision.ok:
        log_event(logger, "risk_block", logging.WARNING, scope=decision.scope, reason=decision.reason, symbol=symbol)
    return decision
