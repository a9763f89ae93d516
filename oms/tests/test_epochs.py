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
