"""The one amount rule of the book (oms/amounts.py): what a Decimal(28, 10) column holds exactly."""

from decimal import Decimal as D

import pytest

from oms.amounts import MAX_NOTIONAL, amount_error, levels_for_storage, position_amount_errors


@pytest.mark.parametrize("value", ["1e-10", "0.0000000001", "1", "123456.1234567891", "999999999999999999.9999999999"])
def test_amounts_the_column_holds_exactly_pass(value):
    assert amount_error(D(value)) is None


@pytest.mark.parametrize(
    "value,reason",
    [
        ("1e-11", "rounds to 0"),
        ("0.00000000004", "rounds to 0"),
        ("0.12345678901", "more than 10 decimal places"),
        ("100.00000000001", "more than 10 decimal places"),
        ("1e18", "Too large"),
        ("9e30", "Too large"),
        ("0", "greater than 0"),
        ("-1", "greater than 0"),
        ("Infinity", "finite"),
        ("NaN", "finite"),
    ],
)
def test_amounts_the_column_cannot_hold_are_refused_with_the_reason(value, reason):
    assert reason in amount_error(D(value))


def test_a_position_names_each_bad_amount_by_its_field():
    errors = position_amount_errors(
        entry_price=D("1e-11"),
        qty=D("0.12345678901"),
        tp_price=D("1e-12"),
        sl_price=None,
        names={"entry_price": "price"},
    )
    assert set(errors) == {"price", "qty", "tp_price"}


def test_a_notional_whose_pnl_could_overflow_is_refused():
    errors = position_amount_errors(entry_price=D("9e11"), qty=D("9e11"), tp_price=None, sl_price=None)
    assert list(errors) == ["notional"]
    assert position_amount_errors(entry_price=D("1e5"), qty=MAX_NOTIONAL / D("1e5"), tp_price=None, sl_price=None) == {}
    # the level's notional counts too: a TP far above the entry could book a PnL beyond the column
    errors = position_amount_errors(entry_price=D("1"), qty=D("1e12") - 1, tp_price=D("9e11"), sl_price=D("0.5"))
    assert list(errors) == ["tp_price"]


def test_the_worst_case_pnl_and_fee_of_an_accepted_position_fit_in_18_integer_digits():
    entry, qty = D("1e5"), MAX_NOTIONAL / D("1e5")
    assert position_amount_errors(entry_price=entry, qty=qty, tp_price=None, sl_price=None) == {}
    worst_pnl = (entry * 1000 - entry) * qty  # a short closed at 1000 × its entry
    worst_fee = entry * 1000 * qty * D("0.01")
    assert abs(worst_pnl) < D("1e18") and worst_fee < D("1e18")


@pytest.mark.parametrize(
    "side,price,tp_pct,sl_pct,field",
    [
        ("short", "100", "99.99999999999", "1", "tp_pct"),  # the TP would be stored as 0
        ("long", "100", "1", "99.99999999999", "sl_pct"),  # the SL would be stored as 0
        ("long", "0.00001", "0.0001", "10", "tp_pct"),  # the TP rounds onto the entry
        ("short", "0.00001", "10", "0.0001", "sl_pct"),  # the SL rounds onto the entry
    ],
)
def test_derived_levels_that_round_to_zero_or_onto_the_entry_are_refused(side, price, tp_pct, sl_pct, field):
    _, errors = levels_for_storage(side=side, price=D(price), tp_pct=D(tp_pct), sl_pct=D(sl_pct))
    assert list(errors) == [field]


def test_derived_levels_are_the_quantized_levels_the_intake_stores():
    (tp, sl), errors = levels_for_storage(side="short", price=D("2000"), tp_pct=D("2"), sl_pct=D("1"))
    assert (tp, sl, errors) == (D("1960"), D("2020"), {})
    (tp, sl), errors = levels_for_storage(side="long", price=D("0.3333333333"), tp_pct=D("1"), sl_pct=D("1"))
    assert (tp, sl, errors) == (D("0.3366666666"), D("0.33"), {})
