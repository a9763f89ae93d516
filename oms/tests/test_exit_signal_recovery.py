"""Exit signals: the defects a second red-team pass found, each test failed before its fix."""

from __future__ import annotations

from decimal import Decimal

import pytest

from oms.models import Position, Signal, SignalOutcome
from oms.tests.factories import open_position
from oms.tests.test_exit_signals import exit_, unquoted  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def test_a_fraction_that_closes_nothing_is_a_400(anon_client):
    position = open_position(symbol="BTCUSDT", qty=Decimal("0.001"))
    response = exit_(anon_client, position_id=position.pk, fraction=1e-12)
    assert response.status_code == 400, (response.status_code, response.json())
    assert Position.objects.get(pk=position.pk).qty == Decimal("0.001")


def test_an_exit_whose_worker_died_before_acting_can_be_sent_again(anon_client):
    from datetime import timedelta

    from django.utils import timezone

    from oms.services.signals import payload_for_storage
    from oms.signal_input import parse_exit_signal

    position = open_position(symbol="BTCUSDT", qty=Decimal("1"))
    body = {"position_id": position.pk, "timestamp": "2025-06-19T10:00:00Z", "signal_id": "exit-77"}
    # what a worker killed after `_claim` committed leaves behind (it never reached the exchange)
    Signal.objects.create(
        kind="exit",
        payload=payload_for_storage(body),
        outcome=SignalOutcome.RECEIVED,
        dedupe_key=parse_exit_signal(body).dedupe_key,
        response={"received": True, "outcome": SignalOutcome.RECEIVED},
        received_at=timezone.now() - timedelta(minutes=30),
    )
    answer = exit_(anon_client, **body).json()
    assert answer["outcome"] == "closed", answer
    assert not Position.objects.get(pk=position.pk).is_open
