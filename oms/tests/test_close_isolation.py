"""One position that cannot be closed never holds back the others (issue: a poisoned row stopped
every exit). Each poisoned row is planted straight into the database, past intake's checks."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from oms.exceptions import PositionCloseFailed
from oms.models import AutoCloseMonitor, ExitStrategy, Order, OrderPurpose, Position, PositionStatus
from oms.services import closing
from oms.services.closing import CloseInstruction, close_positions
from oms.services.health import health_report
from oms.services.positions import position_close, positions_close_all
from oms.services.sweep import auto_close_sweep
from oms.tests.factories import open_position
from oms.tests.test_sweep import StubSource

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)

# Rows intake used to let in: qty 1e-11 (stored as 0 on SQLite), an entry price of 1e-11 with the
# trailing policy (a division by zero), and price and qty of 9e11 (a PnL no column holds).
POISONS = {
    "tiny_qty": {"qty": "1e-11"},
    "tiny_entry_trailing": {"entry_price": "1e-11", "exit_strategy": ExitStrategy.TP_SL_TRAILING_V1},
    "overflowing_pnl": {"entry_price": "900000000000", "qty": "900000000000"},
}


def plant(position: Position, columns: dict) -> None:
    """Write `columns` with raw SQL (no model validation, no rounding); skip when the database
    itself refuses such a row (then it cannot poison this database)."""
    assignments = ", ".join(f"{connection.ops.quote_name(name)} = %s" for name in columns)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"UPDATE oms_position SET {assignments} WHERE id = %s", [*columns.values(), position.pk])
    except IntegrityError:
        pytest.skip(f"{connection.vendor} refuses this row by its own constraints")


def book_with(poison: dict) -> tuple[Position, Position, Position]:
    """Two healthy positions (BTC, SOL) and a poisoned one (ETH), all old enough to be swept."""
    created = NOW - timedelta(minutes=5)
    good = open_position(symbol="BTCUSDT", created_at=created)
    other = open_position(symbol="SOLUSDT", created_at=created)
    bad = open_position(symbol="ETHUSDT", created_at=created)
    plant(bad, poison)
    return good, other, bad


CRASH_PRICES = {"BTCUSDT": "90", "SOLUSDT": "90", "ETHUSDT": "90"}  # every stop loss is hit


class CrashSource(StubSource):
    """The crash prices, for one symbol (a manual close) as for many."""

    def __init__(self) -> None:
        super().__init__(CRASH_PRICES)

    def get_quote(self, symbol: str):
        return self.quote(symbol, CRASH_PRICES[symbol])


@pytest.mark.parametrize("poison", POISONS.values(), ids=POISONS.keys())
def test_the_sweep_closes_the_book_around_a_poisoned_row(poison):
    good, other, bad = book_with(poison)

    result = auto_close_sweep(now=NOW, source=StubSource(CRASH_PRICES))

    assert result.error == ""
    assert {p.pk for p in result.closed} == {good.pk, other.pk}
    assert set(result.failed_positions) == {bad.pk}
    assert Position.objects.get(pk=bad.pk).status == PositionStatus.OPEN
    assert Order.objects.filter(purpose=OrderPurpose.EXIT).count() == 2
    report = health_report()
    failures = report["auto_close"]["close_failures"]
    assert list(failures) == [str(bad.pk)] and failures[str(bad.pk)]["count"] == 1
    assert report["status"] == "degraded"
    assert [r for r in report["reasons"] if r["code"] == "close_failing"][0]["detail"].startswith(f"#{bad.pk} ")

    # The next sweep still closes what becomes closable and keeps reporting the bad row.
    late = open_position(symbol="BTCUSDT", created_at=NOW - timedelta(minutes=1))
    result = auto_close_sweep(now=NOW, source=StubSource(CRASH_PRICES))
    assert [p.pk for p in result.closed] == [late.pk]
    assert AutoCloseMonitor.load().close_failures[str(bad.pk)]["count"] == 2


@pytest.mark.parametrize("poison", POISONS.values(), ids=POISONS.keys())
def test_close_all_and_the_command_close_everything_else_and_name_the_row(poison, monkeypatch, capsys):
    good, other, bad = book_with(poison)
    monkeypatch.setattr("oms.services.positions.get_price_source", CrashSource)

    result = positions_close_all()
    assert {p.pk for p in result.closed} == {good.pk, other.pk}
    assert set(result.failed_positions) == {bad.pk}

    with pytest.raises(SystemExit) as exit_info:
        call_command("close_all", "--yes")
    assert exit_info.value.code == 1
    assert f"NOT closed: #{bad.pk}" in capsys.readouterr().out


def test_a_manual_close_of_the_poisoned_row_is_a_clear_409_and_others_still_close(operator_client, monkeypatch):
    good, _, bad = book_with(POISONS["overflowing_pnl"])
    monkeypatch.setattr("oms.services.positions.get_price_source", CrashSource)

    answer = operator_client.post(f"/positions/{bad.pk}/close")
    assert answer.status_code == 409
    assert answer.json()["error"] == "close_failed" and "pnl" in answer.json()["detail"]

    answer = operator_client.post(f"/positions/{good.pk}/close")
    assert answer.status_code == 200 and answer.json()["status"] == "closed"

    answer = operator_client.post("/positions/close-all", {"confirm": "CLOSE ALL"}, format="json")
    assert answer.status_code == 200
    assert list(answer.json()["failed_positions"]) == [str(bad.pk)]


def test_a_row_the_database_refuses_is_retried_alone(monkeypatch):
    """A chunk whose statements fail is redone one position at a time: only the row at fault stays open."""
    positions = [open_position(symbol="BTCUSDT") for _ in range(4)]
    refused = positions[2]
    real_exit_order = closing.exit_order_for

    def exit_order_with_zero_qty_for_one(position):
        order = real_exit_order(position)
        if position.pk == refused.pk:
            order.qty = D("0")  # the order_qty_positive constraint refuses this insert
        return order

    monkeypatch.setattr(closing, "exit_order_for", exit_order_with_zero_qty_for_one)
    result = close_positions([CloseInstruction(p.pk, D("101"), "manual") for p in positions])

    assert {p.pk for p in result.closed} == {p.pk for p in positions} - {refused.pk}
    assert list(result.failed) == [refused.pk] and "database refused" in result.failed[refused.pk]
    assert Position.objects.get(pk=refused.pk).status == PositionStatus.OPEN
    assert Position.objects.filter(status=PositionStatus.CLOSED).count() == 3
    assert Order.objects.filter(purpose=OrderPurpose.EXIT).count() == 3


def test_position_close_raises_a_domain_error_for_a_row_it_cannot_close():
    _, _, bad = book_with(POISONS["overflowing_pnl"])
    with pytest.raises(PositionCloseFailed, match="does not fit"):
        position_close(position=Position.objects.get(pk=bad.pk), price=D("90"), reason="manual")
