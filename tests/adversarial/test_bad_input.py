"""Issue #9: whatever body the bot sends, /signals/bounce answers 200 or a JSON 400 that is recorded
(a rejected Signal row and a valid audit line), never a 500; a held database lock is a JSON 503."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oms.models import OmsControl, Position, Signal, SignalOutcome

pytestmark = pytest.mark.adversarial

VALID = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "price": 100,
    "timestamp": "2025-06-19T10:15:00Z",
    "tp_pct": 4.5,
    "sl_pct": 1.5,
}
NASTY_TEXT = st.sampled_from(["\ud800", "a\udfffb", "\x00", "١٠", "²", "é", "x" * 65, "x" * 200, ""])
NASTY_NUMBERS = st.sampled_from(
    [
        "1e309",
        "-1e400",
        "1e-11",
        "9e11",
        "0.12345678901",
        "1e18",
        "NaN",
        "Infinity",
        "-0",
        "1E+2",
        "99.99999999999",
        "0",
        "1" + "0" * 400,
        "1" + "0" * 5000,
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | NASTY_TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
FIELDS = [
    "symbol",
    "side",
    "price",
    "timestamp",
    "tp_pct",
    "sl_pct",
    "qty",
    "signal_id",
    "strategy",
    "exchange",
    "timeframe_min",
    "exit_strategy",
    "extra",
]
NUMERIC = ["price", "qty", "tp_pct", "sl_pct", "extra"]


@st.composite
def raw_bodies(draw) -> str:
    """A valid signal with some fields replaced by nasty values, numbers spliced in as raw JSON text
    (so 1e400, NaN and friends reach the parser as the bot would send them); or deep nesting, or junk."""
    kind = draw(st.sampled_from(["fields", "numbers", "deep", "junk"]))
    if kind == "deep":
        depth = draw(st.sampled_from([33, 900, 5000]))
        return '{"symbol": ' + "[" * depth + "]" * depth + "}"
    if kind == "junk":
        return draw(st.sampled_from(["{", "[]", "null", "1e400", '"\\ud800"', "{'a': 1}", "\ufeff{}"]))
    body = dict(VALID, signal_id=draw(st.text(min_size=1, max_size=12)))
    if kind == "fields":
        body.update(draw(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=3)))
        return json.dumps(body)
    numbers = draw(st.dictionaries(st.sampled_from(NUMERIC), NASTY_NUMBERS, min_size=1, max_size=2))
    text = json.dumps({k: v for k, v in body.items() if k not in numbers})
    return text[:-1] + "".join(f', "{name}": {number}' for name, number in numbers.items()) + "}"


def strict_json(line: str) -> dict:
    def refuse(constant):
        raise ValueError(f"bare {constant}")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.django_db
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(text=raw_bodies())
def test_any_body_is_answered_200_or_a_recorded_json_400_never_a_500(anon_client, settings_audit, text):
    before = Signal.objects.count()
    response = anon_client.generic(
        "POST", "/signals/bounce", text.encode("utf-8", "surrogatepass"), content_type="application/json"
    )
    assert response.status_code in (200, 400), (text[:200], response.content[:300])
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert Signal.objects.count() == before + 1
    row = Signal.objects.order_by("-id").first()
    json.dumps(row.payload, allow_nan=False)  # a real JSON document, storable anywhere
    if response.status_code == 400:
        assert body["received"] is False and body["errors"] and row.outcome == SignalOutcome.REJECTED
    for line in settings_audit.read_text(encoding="utf-8").splitlines():
        strict_json(line)
    for position in Position.objects.all():  # what was let in, the book can hold
        assert position.qty > 0 and position.entry_price > 0 and position.tp_price > 0 and position.sl_price > 0


@pytest.fixture
def settings_audit(settings, tmp_path):
    path = tmp_path / "audit.jsonl"
    settings.AUDIT_LOG_PATH = path
    path.write_text("")
    return path


@pytest.mark.django_db(transaction=True)
def test_a_database_lock_held_past_the_timeout_is_a_json_503_with_retry_after_then_signals_open_again(
    anon_client, signal_body, settings_audit
):
    """A real lock: another connection holds the switch row (PostgreSQL) or the write lock (SQLite)."""
    OmsControl.load()  # an earlier transactional test's flush may have removed the row that migration made
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    OmsControl.objects.select_for_update().get(pk=1)
                else:  # BEGIN IMMEDIATE already holds the database write lock
                    OmsControl.objects.filter(pk=1).update(reason="holding the lock")
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert locked.wait(10)
        with connection.cursor() as cursor:  # a short timeout for this test (DB_LOCK_TIMEOUT_SEC in production)
            if connection.vendor == "postgresql":
                cursor.execute("SET lock_timeout = '300ms'")
            else:
                cursor.execute("PRAGMA busy_timeout = 300")
        response = anon_client.post("/signals/bounce", signal_body(signal_id="while-locked"), format="json")
    finally:
        release.set()
        holder.join()
    assert response.status_code == 503 and response["Content-Type"] == "application/json"
    assert int(response["Retry-After"]) > 0
    assert response.json()["received"] is False and response.json()["error"] == "database_busy"
    assert Position.objects.count() == 0
    [line] = settings_audit.read_text(encoding="utf-8").splitlines()
    assert strict_json(line)["outcome"] == "error"
    # The bot retries after Retry-After: the same signal now opens.
    retried = anon_client.post("/signals/bounce", signal_body(signal_id="while-locked"), format="json")
    assert retried.status_code == 200 and retried.json()["risk_ok"] is True


def test_the_production_lock_timeout_is_the_setting(db, settings):
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW lock_timeout")
            assert cursor.fetchone()[0] == f"{settings.DB_LOCK_TIMEOUT_SEC}s"
        else:
            cursor.execute("PRAGMA busy_timeout")
            assert cursor.fetchone()[0] == settings.DB_LOCK_TIMEOUT_SEC * 1000
