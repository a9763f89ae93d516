"""Per-strategy checks (issue #12 §5): pure decisions over a strategy's limits and exposure."""

import logging
from decimal import Decimal

import pytest

from risk.strategies import (
    StrategyExposure,
    StrategyLimits,
    evaluate_strategy_limits,
    evaluate_strategy_switch,
    log_strategy_block,
)

NOTHING = StrategyExposure()


def decide(limits: StrategyLimits, exposure: StrategyExposure = NOTHING, price="100", qty="1"):
    return evaluate_strategy_limits(limits=limits, entry_price=Decimal(price), qty=Decimal(qty), exposure=exposure)


def test_a_strategy_switched_on_passes_the_switch():
    assert evaluate_strategy_switch(StrategyLimits("s1")).ok


def test_a_strategy_switched_off_is_refused_with_its_name():
    decision = evaluate_strategy_switch(StrategyLimits("bounce_ema10_strict", enabled=False))
    assert (decision.ok, decision.reason, decision.scope) == (
        False,
        "strategy_switched_off (strategy=bounce_ema10_strict)",
        "strategy_switch",
    )


def test_no_limits_of_its_own_allow_everything():
    limits = StrategyLimits("s1")
    assert not limits.has_limits
    assert decide(
        limits, StrategyExposure(open_positions=10**6, open_notional=Decimal("1e12"), positions_today=10**6)
    ).ok


@pytest.mark.parametrize(
    "limits",
    [
        StrategyLimits("s1", max_open_positions=0),
        StrategyLimits("s1", max_positions_per_day=0),
        StrategyLimits("s1", max_exposure_usdt=Decimal("1")),
    ],
)
def test_any_one_limit_counts_as_a_limit(limits):
    assert limits.has_limits


def test_max_open_blocks_at_the_limit_and_names_count_and_limit():
    limits = StrategyLimits("s1", max_open_positions=3)
    assert decide(limits, StrategyExposure(open_positions=2)).ok
    decision = decide(limits, StrategyExposure(open_positions=3))
    assert (decision.ok, decision.reason, decision.scope) == (
        False,
        "strategy_max_open_reached (strategy=s1, count=3, limit=3)",
        "strategy_open",
    )


def test_a_limit_of_zero_open_positions_refuses_every_new_one():
    assert not decide(StrategyLimits("s1", max_open_positions=0)).ok


def test_max_per_day_counts_the_positions_opened_today():
    limits = StrategyLimits("s1", max_positions_per_day=5)
    assert decide(limits, StrategyExposure(positions_today=4)).ok
    decision = decide(limits, StrategyExposure(positions_today=5))
    assert (decision.ok, decision.reason, decision.scope) == (
        False,
        "strategy_max_positions_per_day_reached (strategy=s1, count=5, limit=5)",
        "strategy_daily",
    )


def test_max_exposure_adds_the_new_notional_and_allows_reaching_the_limit_exactly():
    limits = StrategyLimits("s1", max_exposure_usdt=Decimal("500"))
    assert decide(limits, StrategyExposure(open_notional=Decimal("400")), price="100", qty="1").ok
    decision = decide(limits, StrategyExposure(open_notional=Decimal("400")), price="100", qty="1.5")
    assert (decision.ok, decision.reason, decision.scope) == (
        False,
        "strategy_max_exposure_exceeded (strategy=s1, exposure=550, limit=500)",
        "strategy_exposure",
    )


def test_the_first_broken_limit_is_the_reason():
    limits = StrategyLimits("s1", max_open_positions=1, max_positions_per_day=1, max_exposure_usdt=Decimal("1"))
    decision = decide(limits, StrategyExposure(open_positions=1, positions_today=1, open_notional=Decimal("5")))
    assert decision.scope == "strategy_open"
    decision = decide(limits, StrategyExposure(open_positions=0, positions_today=1, open_notional=Decimal("5")))
    assert decision.scope == "strategy_daily"


def test_a_refusal_is_logged_as_a_risk_block_with_the_strategy(caplog):
    caplog.set_level(logging.WARNING, logger="loms.risk")
    decision = evaluate_strategy_switch(StrategyLimits("s1", enabled=False))
    assert log_strategy_block(decision, symbol="BTCUSDT", strategy="s1") is decision
    [record] = [r for r in caplog.records if r.name == "loms.risk"]
    assert (record.getMessage(), record.scope, record.strategy, record.symbol) == (
        "risk_block",
        "strategy_switch",
        "s1",
        "BTCUSDT",
    )


def test_an_allowed_position_logs_nothing(caplog):
    caplog.set_level(logging.DEBUG, logger="loms.risk")
    log_strategy_block(decide(StrategyLimits("s1")), symbol="BTCUSDT", strategy="s1")
    assert not [r for r in caplog.records if r.name == "loms.risk"]
