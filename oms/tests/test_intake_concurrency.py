"""The risk check and the insert are one atomic step, on SQLite and PostgreSQL alike.

Real threads, each with its own database connection, fire signals at the same instant.
"""

from collections import Counter

import pytest

from oms.models import Position, Signal
from oms.services.signals import signal_ingest
from tests.support import run_together

pytestmark = pytest.mark.django_db(transaction=True)


def fire_concurrently(bodies: list[dict]) -> list[dict]:
    return run_together([lambda body=body: signal_ingest(payload=body).body for body in bodies])


def test_fifty_concurrent_signals_never_exceed_the_total_limit(settings, signal_body):
    settings.MAX_OPEN_POSITIONS = 5
    bodies = [signal_body(symbol=f"SYM{i}USDT", signal_id=f"burst-{i}") for i in range(50)]
    results = fire_concurrently(bodies)
    assert Position.objects.filter(status="open").count() == 5
    assert Counter(r["risk_ok"] for r in results) == {True: 5, False: 45}
    assert Signal.objects.count() == 50


def test_concurrent_signals_never_exceed_the_per_symbol_limit(settings, signal_body):
    settings.MAX_OPEN_POSITIONS_PER_SYMBOL = 2
    bodies = [signal_body(symbol="BTCUSDT" if i % 2 else "ETHUSDT", signal_id=f"s-{i}") for i in range(30)]
    fire_concurrently(bodies)
    assert dict(Counter(Position.objects.values_list("symbol", flat=True))) == {"BTCUSDT": 2, "ETHUSDT": 2}


def test_the_same_signal_sent_twenty_times_at_once_opens_one_position(signal_body):
    results = fire_concurrently([signal_body(signal_id="same") for _ in range(20)])
    assert Position.objects.count() == 1
    assert sum(1 for r in results if r.get("duplicate")) == 19
    assert len({r["position_id"] for r in results}) == 1


def test_concurrent_signals_sized_by_risk_fill_the_exposure_exactly_and_never_past_it(settings, signal_body):
    from decimal import Decimal

    from django.db.models import F, Sum

    settings.RISK_PER_TRADE_PCT, settings.STARTING_CAPITAL_USDT = Decimal("1"), Decimal("10000")
    settings.MAX_TOTAL_EXPOSURE_USDT = Decimal("12000")  # each sized position alone: 50 × 100 = 5 000
    bodies = [signal_body(symbol=f"SYM{i}USDT", signal_id=f"risk-{i}", price=100.0, sl_pct=2) for i in range(12)]
    results = fire_concurrently(bodies)
    qtys = sorted(Position.objects.values_list("qty", flat=True))
    # two full sizes, one capped to the 2 000 left, then nothing is left and the exposure limit refuses
    assert qtys == [Decimal("20"), Decimal("50"), Decimal("50")]
    assert Position.objects.aggregate(n=Sum(F("qty") * F("entry_price")))["n"] == Decimal("12000")
    assert Counter(r["risk_ok"] for r in results) == {True: 3, False: 9}
