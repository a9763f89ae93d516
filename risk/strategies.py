"""Per-strategy checks (issue #12 §5): one strategy's own switch and limits, beside the global ones.

Pure functions over values, like `risk.limits`: `oms` reads the strategy's control row and, only when
it sets a limit, the strategy's exposure, inside the transaction that will insert the position.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from lomsite.jsonlog import log_event
from risk.limits import ALLOW, RiskDecision, _fmt

logger = logging.getLogger("loms.risk")


@dataclass(frozen=True)
class StrategyLimits:
    """One strategy's switch and limits; None means "no limit of its own" (the global ones still apply)."""

    strategy: str
    enabled: bool = True
    max_open_positions: int | None = None
    max_positions_per_day: int | None = None
    max_exposure_usdt: Decimal | None = None

    @property
    def has_limits(self) -> bool:
        return any(
            value is not None for value in (self.max_open_positions, self.max_positions_per_day, self.max_exposure_usdt)
        )


@dataclass(frozen=True)
class StrategyExposure:
    """The strategy's open positions, their notional (entry × qty) and the positions it opened today (UTC)."""

    open_positions: int = 0
    open_notional: Decimal = Decimal("0")
    positions_today: int = 0


def evaluate_strategy_switch(limits: StrategyLimits) -> RiskDecision:
    """Refuse every new position of a strategy that is switched off."""
    if not limits.enabled:
        return RiskDecision(False, f"strategy_switched_off (strategy={limits.strategy})", "strategy_switch")
    return ALLOW


def evaluate_strategy_limits(
    *, limits: StrategyLimits, entry_price: Decimal, qty: Decimal, exposure: StrategyExposure
) -> RiskDecision:
    """The first of the strategy's own limits the new position would break, or ALLOW."""
    name = limits.strategy
    if limits.max_open_positions is not None and exposure.open_positions >= limits.max_open_positions:
        return RiskDecision(
            False,
            f"strategy_max_open_reached (strategy={name}, count={exposure.open_positions}, "
            f"limit={limits.max_open_positions})",
            "strategy_open",
        )
    if limits.max_positions_per_day is not None and exposure.positions_today >= limits.max_positions_per_day:
        return RiskDecision(
            False,
            f"strategy_max_positions_per_day_reached (strategy={name}, count={exposure.positions_today}, "
            f"limit={limits.max_positions_per_day})",
            "strategy_daily",
        )
    exposure_after = exposure.open_notional + entry_price * qty
    if limits.max_exposure_usdt is not None and exposure_after > limits.max_exposure_usdt:
        return RiskDecision(
            False,
            f"strategy_max_exposure_exceeded (strategy={name}, exposure={_fmt(exposure_after)}, "
            f"limit={_fmt(limits.max_exposure_usdt)})",
            "strategy_exposure",
        )
    return ALLOW


def log_strategy_block(decision: RiskDecision, *, symbol: str, strategy: str) -> RiskDecision:
    """Log a refusal as `risk_block`, like the global limits, and hand the decision back."""
    if not decision.ok:
        log_event(
            logger,
            "risk_block",
            logging.WARNING,
            scope=decision.scope,
            reason=decision.reason,
            symbol=symbol,
            strategy=strategy,
        )
    return decision
