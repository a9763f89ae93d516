"""Paper epochs: new positions go to the current epoch, history keeps its own, stats filter by it."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from oms.models import Position
from oms.selectors import position_stats, positions_filtered
from oms.services.epochs import epoch_current
from oms.services.signals import signal_ingest

pytestmark = pytest.mark.django_db


def test_new_positions_go_to_the_current_epoch_and_old_ones_keep_theirs(signal_body):
    assert epoch_current() == "default"
    signal_ingest(payload=signal_body(signal_id="before"))
    call_command("new_epoch", "shadow-2025-07", stdout=StringIO())
    signal_ingest(payload=signal_body(signal_id="after-1"))
    signal_ingest(payload=signal_body(signal_id="after-2"))
    labels = sorted(Position.objects.values_list("account_label", flat=True))
    assert labels == ["default", "shadow-2025-07", "shadow-2025-07"]
    assert position_stats(positions_filtered(account_label="shadow-2025-07"))["total_positions"] == 2


def test_new_epoch_rejects_a_bad_name_and_the_current_one():
    with pytest.raises(CommandError, match="epoch name"):
        call_command("new_epoch", "no spaces please", stdout=StringIO())
    with pytest.raises(CommandError, match="already the current epoch"):
        call_command("new_epoch", "default", stdout=StringIO())
    assert epoch_current() == "default"


def test_new_epoch_without_a_name_lists_the_epochs(signal_body):
    signal_ingest(payload=signal_body(signal_id="one"))
    out = StringIO()
    call_command("new_epoch", stdout=out)
    assert "default (current)" in out.getvalue()


def test_print_stats_filters_by_epoch(signal_body):
    signal_ingest(payload=signal_body(signal_id="a"))
    call_command("new_epoch", "e2", stdout=StringIO())
    signal_ingest(payload=signal_body(signal_id="b", symbol="ETHUSDT"))
    out = StringIO()
    call_command("print_stats", "--epoch", "e2", "--json", stdout=out)
    assert json.loads(out.getvalue())["total_positions"] == 1
    out = StringIO()
    call_command("print_stats", "--by", "symbol", stdout=out)
    assert "BTCUSDT" in out.getvalue() and "ETHUSDT" in out.getvalue()


def test_new_epoch_records_its_starting_capital_in_the_operator_audit(settings):
    from decimal import Decimal

    from oms.models import Epoch, OperatorAction
    from oms.selectors import epoch_equity

    settings.STARTING_CAPITAL_USDT = Decimal("7000")
    assert epoch_equity()["starting_capital"] == Decimal("7000")  # "default" never recorded one
    call_command("new_epoch", "e1", "--capital", "2500.5", "--reason", "smaller book", stdout=StringIO())
    call_command("new_epoch", "e2", stdout=StringIO())
    capitals = dict(Epoch.objects.values_list("name", "starting_capital"))
    assert capitals == {"e1": Decimal("2500.5"), "e2": Decimal("7000")}
    action = OperatorAction.objects.filter(action="epoch").order_by("at", "id").first()
    assert action.details == {"previous": "default", "epoch": "e1", "starting_capital": "2500.5"}
    settings.STARTING_CAPITAL_USDT = Decimal("1")  # a recorded capital does not follow the setting
    assert epoch_equity("e1")["starting_capital"] == Decimal("2500.5")


def test_new_epoch_refuses_a_bad_capital_and_a_second_capital_for_an_epoch():
    for bad in ("0", "-5", "abc", "1e-11"):
        with pytest.raises(CommandError, match="capital"):
            call_command("new_epoch", "e1", "--capital", bad, stdout=StringIO())
    assert epoch_current() == "default"
    call_command("new_epoch", "e1", "--capital", "100", stdout=StringIO())
    call_command("new_epoch", "e2", stdout=StringIO())
    with pytest.raises(CommandError, match="already started with a capital of 100 USDT"):
        call_command("new_epoch", "e1", "--capital", "200", stdout=StringIO())
    call_command("new_epoch", "e1", stdout=StringIO())  # back to e1 with the capital it had
    assert epoch_current() == "e1"


def test_the_epoch_list_shows_each_epochs_capital_equity_and_return():
    from oms.tests.factories import closed_position

    call_command("new_epoch", "e1", "--capital", "1000", stdout=StringIO())
    closed_position(pnl="-50", account_label="e1")
    closed_position(pnl="20", account_label="e1")
    out = StringIO()
    call_command("new_epoch", stdout=out)
    [line] = [line for line in out.getvalue().splitlines() if line.startswith("e1 (current)")]
    assert line.split()[4:7] == ["1000", "970", "-3"]
