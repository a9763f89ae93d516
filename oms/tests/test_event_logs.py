"""Structured JSON log events for the signal and position lifecycle."""

import json
import logging
from decimal import Decimal

import pytest

from lomsite.jsonlog import JsonFormatter
from oms.services.positions import position_close
from oms.services.signals import signal_ingest
from oms.services.switch import oms_switch_set
from oms.tests.factories import open_position

pytestmark = pytest.mark.django_db


def events(caplog) -> dict[str, logging.LogRecord]:
    return {record.getMessage(): record for record in caplog.records}


def test_lifecycle_events_are_logged_with_their_fields(
    caplog, signal_body, settings, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.INFO)
    with django_capture_on_commit_callbacks(execute=True):  # position_opened is logged after the commit
        signal_ingest(payload=signal_body(symbol="ETHUSDT"))
    settings.MAX_OPEN_POSITIONS = 1
    signal_ingest(payload=signal_body(symbol="ETHUSDT"))
    with django_capture_on_commit_callbacks(execute=True):  # closes are logged once committed
        position_close(position=open_position(), price=Decimal("104.5"), reason="tp")
    oms_switch_set(enabled=False, actor="olga", reason="test")
    logged = events(caplog)
    assert {"bounce_received", "position_opened", "risk_block", "position_closed", "oms_switch_changed"} <= set(logged)
    assert logged["position_opened"].symbol == "ETHUSDT"
    assert logged["risk_block"].scope == "total"
    assert logged["position_closed"].reason == "tp" and logged["position_closed"].pnl == Decimal("4.5")
    assert logged["oms_switch_changed"].enabled is False


def test_the_formatter_writes_one_json_object_with_the_event_fields():
    record = logging.LogRecord("loms.oms", logging.INFO, __file__, 1, "position_closed", (), None)
    record.pnl = Decimal("1.5")
    record.symbol = "BTCUSDT"
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "position_closed" and line["pnl"] == 1.5 and line["symbol"] == "BTCUSDT"
    assert line["level"] == "INFO" and "ts" in line
