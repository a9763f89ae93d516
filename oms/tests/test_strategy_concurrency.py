"""A strategy's own limits and switch hold under concurrent signals, on SQLite and PostgreSQL alike.

Real threads, each with its own database connection, fire signals at the same instant.
"""

from collections import Counter
from decimal import Decimal

import pytest

from oms.models import OperatorSource, Position, Signal, SignalOutcome, StrategyControl
from oms.services.operator_audit import Operator
from oms.services.signals import signal_ingest
from oms.services.strategies import strategy_control_set
from tests.support import run_together

pytestmark = pytest.mark.django_db(transaction=True)

BOUNCE = "bounce_ema10_strict"
OLGA = Operator(actor="olga", source=OperatorSource.COMMAND, reason="concurrency test")


def fire_concurrently(bodies: list[dict]) -> list[dict]:
    return run_together([lambda body=body: signal_ingest(payload=body).body for body in bodies])


@pytest.mark.parametrize(
    ("limits", "opened", "reason"),
    [
        ({"max_open_positions": 4}, 4, "strategy_max_open_reached"),
        ({"max_exposure_usdt": Decimal("350")}, 3, "strategy_max_exposure_exceeded"),
        ({"max_positions_per_day": 2}, 2, "strategy_max_positions_per_day_reached"),
    ],
)
def test_thirty_concurrent_signals_never_exceed_the_strategys_own_limit(signal_body, limits, opened, reason):
    strategy_control_set(strategy=BOUNCE, operator=OLGA, **limits)
    bodies = [signal_body(symbol=f"SYM{i}USDT", signal_id=f"a-{i}", price=100.0, qty=1) for i in range(20)]
    bodies += [signal_body(symbol=f"SYM{i}USDT", signal_id=f"b-{i}", strategy="other", qty=1) for i in range(10)]
    results = fire_concurrently(bodies)
    assert Position.objects.filter(strategy=BOUNCE).count() == opened
    assert Position.objects.filter(strategy="other").count() == 10  # another strategy is not held by them
    refused = [r["risk_reason"] for r in results if not r["risk_ok"]]
    assert len(refused) == 20 - opened and all(r.startswith(reason) for r in refused)


def test_switching_a_strategy_off_during_a_burst_leaves_no_position_opened_after_it(signal_body):
    """The change takes the OMS lock: every position of the burst opened before it, none after."""
    bodies = [signal_body(symbol=f"SYM{i}USDT", signal_id=f"c-{i}") for i in range(20)]
    calls = [lambda: strategy_control_set(strategy=BOUNCE, operator=OLGA, enabled=False)]
    calls += [lambda body=body: signal_ingest(payload=body).body for body in bodies]
    results = run_together(calls)
    switched_at = StrategyControl.objects.get(strategy=BOUNCE).changed_at
    assert all(p.created_at < switched_at for p in Position.objects.all())
    answers = results[1:]
    opened = sum(1 for r in answers if r["risk_ok"])
    assert Position.objects.count() == opened
    assert all(r["risk_reason"] == f"strategy_switched_off (strategy={BOUNCE})" for r in answers if not r["risk_ok"])
    counts = Counter(Signal.objects.values_list("outcome", flat=True))
    assert (counts[SignalOutcome.OPENED], counts[SignalOutcome.RISK_BLOCKED]) == (opened, 20 - opened)
