"""CSV exports: a cell a bot wrote must not run as a spreadsheet formula; numbers stay numbers."""

from __future__ import annotations

import csv
import io

import pytest

from oms.models import Position
from oms.services.exports import positions_export
from oms.tests.factories import closed_position

pytestmark = pytest.mark.django_db

FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1+1", "\r=1+1"]


def exported_rows() -> list[dict]:
    handle = io.StringIO()
    positions_export(Position.objects.all(), handle, fmt="csv")
    return list(csv.DictReader(io.StringIO(handle.getvalue())))


@pytest.mark.parametrize("text", FORMULAS)
def test_a_text_cell_that_looks_like_a_formula_is_written_as_text(text):
    closed_position(pnl="1", strategy=text, external_order_id=text[:60])
    row = exported_rows()[0]
    assert row["strategy"] == "'" + text
    assert row["external_order_id"] == "'" + text[:60]


def test_negative_numbers_stay_numbers_and_plain_text_is_untouched():
    closed_position(pnl="-12.5", fee="0.25", strategy="bounce_ema10", account_label="e-1")
    row = exported_rows()[0]
    assert (row["pnl"], row["close_price"], row["fee"]) == ("-12.5", "87.5", "0.25")
    assert (row["strategy"], row["account_label"], row["symbol"]) == ("bounce_ema10", "e-1", "BTCUSDT")
