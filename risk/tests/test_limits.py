from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from risk.limits import ExposureSnapshot, RiskLimits, check_risk_limits, evaluate_risk

NOW = datetime(2025, 6, 19, 12, 0, tzinfo=UTC)


NOTHING_OPEN = ExposureSnapshot()


def decide(limits: RiskLimits, exposure: ExposureSnapshot = NOTHING_OPEN, symbol="BTCUSDT", price="100", qty="1"):
    return evaluate_risk(symbol=symbol, entry_price=Decimal(price), qty=Decimal(qty), exposure=exposure, limits=limits)


def test_no_limits_allow_everything():
    decision = decide(
        RiskLimits(), ExposureSnapshot(total_open=10_000, symbol_open=10_000, total_open_notional=Decimal("1e9"))
    )
    assert decision.ok and decision.reason == "" and decision.scope == ""


def test_total_limit_blocks_at_the_limit_with_the_exact_reason():
    decision = decide(RiskLimits(max_open_positions=10), ExposureSnapshot(total_open=10))
    assert (decision.ok, decision.reason, decision.scope) == (
        False,
        "max_total_open_reached (total=10, limit=10)",
        "total",
    )


def test_total_limit_allows_below_the_limit():
    assert decide(RiskLimits(max_open_positions=10), ExposureSnapshot(total_open=9)).ok


def test_symbol_limit_names_symbol_count_and_limit():
    decision = decide(
        RiskLimits(max_open_positions_per_symbol=2), ExposureSnapshot(total_open=5, symbol_open=2), symbol="ETHUSDT"
    )
    assert (decision.ok, decision.reason, decision.scope) == (
        False,
        "max_symbol_open_reached (symbol=ETHUSDT, count=2, limit=2)",
        "symbol",
    )


def test_size_limit_compares_entry_times_qty():
    limits = RiskLimits(max_size_per_position_usdt=Decimal("500"))
    assert decide(limits, price="100", qty="5").ok
    decision = decide(limits, price="100", qty="5.5")
    assert (decision.ok, decision.reason, decision.scope) == (
        False,
        "max_size_per_position_exceeded (notional=550, limit=500)",
        "size",
    )


def test_size_reason_shows_two_decimals_for_fractional_notional():
    decision = decide(RiskLimits(max_size_per_position_usdt=Decimal("10")), price="104812.4", qty="0.001")
    assert decision.reason == "max_size_per_position_exceeded (notional=104.81, limit=10)"


def test_zero_limit_blocks_everything():
    assert not decide(RiskLimits(max_open_positions=0)).ok


def test_total_exposure_counts_the_new_position():
    limits = RiskLimits(max_total_exposure_usdt=Decimal("1000"))
    assert decide(limits, ExposureSnapshot(total_open_notional=Decimal("900")), qty="1").ok
    decision = decide(limits, ExposureSnapshot(total_open_notional=Decimal("950")), qty="1")
    assert decision.scope == "exposure" and "exposure=1050" in decision.reason


def test_allowlist_and_denylist():
    assert decide(RiskLimits(symbol_allowlist=("BTCUSDT",)), symbol="BTCUSDT").ok
    assert decide(RiskLimits(symbol_allowlist=("BTCUSDT",)), symbol="DOGEUSDT").scope == "symbol_list"
    denied = decide(RiskLimits(symbol_denylist=("DOGEUSDT",)), symbol="DOGEUSDT")
    assert denied.reason == "symbol_denied (symbol=DOGEUSDT)"


def test_daily_signal_limits():
    assert decide(RiskLimits(max_positions_per_day=3), ExposureSnapshot(positions_today=3)).scope == "daily"
    assert (
        decide(RiskLimits(max_positions_per_day_per_symbol=1), ExposureSnapshot(symbol_positions_today=1)).scope
        == "daily_symbol"
    )


def test_cooldown_after_a_stop_loss():
    limits = RiskLimits(sl_cooldown_min=30)
    recent = ExposureSnapshot(last_symbol_sl_at=NOW - timedelta(minutes=10), now=NOW)
    old = ExposureSnapshot(last_symbol_sl_at=NOW - timedelta(minutes=31), now=NOW)
    assert decide(limits, recent).scope == "cooldown"
    assert decide(limits, old).ok


def test_first_breached_limit_wins_in_a_stable_order():
    limits = RiskLimits(max_open_positions=1, max_open_positions_per_symbol=1)
    assert decide(limits, ExposureSnapshot(total_open=1, symbol_open=1)).scope == "total"


def test_a_block_is_logged_as_risk_block_with_its_scope(caplog):
    caplog.set_level("WARNING", logger="loms.risk")
    check_risk_limits(
        "BTCUSDT",
        Decimal("100"),
        Decimal("1"),
        exposure=ExposureSnapshot(total_open=1),
        limits=RiskLimits(max_open_positions=1),
    )
    [record] = [r for r in caplog.records if r.getMessage() == "risk_block"]
    assert record.scope == "total"
    assert record.reason == "max_total_open_reached (total=1, limit=1)"


def test_limits_come_from_settings_with_empty_meaning_none(settings):
    settings.MAX_OPEN_POSITIONS = 7
    settings.MAX_OPEN_POSITIONS_PER_SYMBOL = None
    limits = RiskLimits.from_settings()
    assert limits.max_open_positions == 7
    assert limits.max_open_positions_per_symbol is None


@pytest.mark.parametrize("total,limit,ok", [(0, 1, True), (1, 1, False), (2, 1, False), (4, 5, True)])
def test_total_limit_boundary(total, limit, ok):
    assert decide(RiskLimits(max_open_positions=limit), ExposureSnapshot(total_open=total)).ok is ok
