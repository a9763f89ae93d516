from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from risk.sizing import size_by_risk

STEP = Decimal("1e-10")


def size(equity="10000", pct="1", entry="100", stop="98", step=STEP, **caps):
    return size_by_risk(
        equity=Decimal(equity),
        risk_pct=Decimal(pct),
        entry_price=Decimal(entry),
        stop_price=Decimal(stop) if stop is not None else None,
        qty_step=Decimal(step),
        **{name: Decimal(value) for name, value in caps.items()},
    )


def test_a_long_risks_the_share_of_equity_down_to_its_stop():
    decision = size(equity="10000", pct="1", entry="100", stop="98")
    assert decision.ok and decision.qty == Decimal("50")  # 100 USDT at risk over 2 USDT a unit
    assert decision.qty * (Decimal("100") - Decimal("98")) == Decimal("100")


def test_a_short_is_sized_by_the_distance_up_to_its_stop():
    assert size(equity="5000", pct="2", entry="100", stop="104").qty == Decimal("25")  # 100 over 4


def test_the_qty_is_rounded_down_to_the_step_so_the_risk_never_exceeds_the_share():
    decision = size(equity="1000", pct="1", entry="30", stop="27", step="0.001")  # 10 / 3 = 3.333…
    assert decision.qty == Decimal("3.333")
    assert decision.qty * 3 <= Decimal("10")
    assert size(equity="1000", pct="1", entry="30", stop="27").qty == Decimal("3.3333333333")


def test_the_per_position_ceiling_caps_the_notional():
    decision = size(equity="10000", pct="1", entry="100", stop="98", max_notional="1234.5")
    assert decision.ok and decision.qty == Decimal("12.345")
    assert decision.qty * 100 <= Decimal("1234.5")


def test_the_free_exposure_caps_the_notional_and_the_smaller_cap_wins():
    assert size(max_notional="3000", exposure_room="700").qty == Decimal("7")
    assert size(max_notional="300", exposure_room="700").qty == Decimal("3")
    assert size(max_notional="300000", exposure_room="700000").qty == Decimal("50")  # caps above: no effect


def test_no_free_exposure_leaves_the_qty_to_the_exposure_limit():
    assert size(exposure_room="0").qty == Decimal("50")
    assert size(exposure_room="-20").qty == Decimal("50")


def test_no_stop_is_refused():
    for stop in (None, "100"):
        decision = size(stop=stop)
        assert not decision.ok and decision.qty == 0
        assert decision.reason.startswith("risk_sizing_needs_stop")


@pytest.mark.parametrize("equity", ["0", "-12.5"])
def test_no_equity_is_refused_with_the_equity(equity):
    decision = size(equity=equity)
    assert not decision.ok and decision.reason == f"risk_sizing_no_equity (equity={Decimal(equity):f})"


def test_a_size_that_rounds_to_nothing_is_refused():
    decision = size(equity="1", pct="0.01", entry="60000", stop="59000", step="0.001")
    assert not decision.ok and decision.reason == "risk_sizing_qty_zero (risk=0.0001, stop_distance=1000)"
    assert not size(max_notional="0.00000001", step="0.001").ok


@given(
    equity=st.decimals(min_value="1", max_value="1e7", places=2),
    pct=st.decimals(min_value="0.01", max_value="10", places=2),
    entry=st.decimals(min_value="0.01", max_value="1e5", places=4),
    distance_pct=st.decimals(min_value="0.2", max_value="10", places=2),
    short=st.booleans(),
    cap=st.one_of(st.none(), st.decimals(min_value="1", max_value="1e6", places=2)),
)
def test_the_risk_and_the_notional_never_exceed_what_is_allowed(equity, pct, entry, distance_pct, short, cap):
    distance = entry * distance_pct / 100
    stop = entry + distance if short else entry - distance
    decision = size_by_risk(
        equity=equity, risk_pct=pct, entry_price=entry, stop_price=stop, qty_step=STEP, max_notional=cap
    )
    if not decision.ok:
        assert decision.reason.startswith("risk_sizing_qty_zero")
        return
    assert decision.qty * distance <= equity * pct / 100
    assert decision.qty == decision.qty.quantize(STEP)
    if cap is not None:
        assert decision.qty * entry <= cap
    # one step more would exceed the risk or the cap: the qty is the largest allowed
    bigger = decision.qty + STEP
    assert bigger * distance > equity * pct / 100 or (cap is not None and bigger * entry > cap)
