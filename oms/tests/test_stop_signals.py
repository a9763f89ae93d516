"""Issue #12 §1: `POST /signals/stop` moves the stop loss of the open position it names (to a price or
to break even), never loosening it unless the signal says so; the console's "move stop" form uses the
same service (docs/CONTRACT.md §2a)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from oms.api.hmac_auth import sign_body
from oms.models import OperatorAction, Position, Signal, SignalKind, SignalOutcome
from oms.services.closing import CloseInstruction, close_positions
from oms.services.exit_signals import stop_signal_ingest
from oms.services.operator_audit import Operator
from oms.services.stops import position_stop_move, stop_in_force, stop_move_refusal
from oms.services.sweep import auto_close_sweep
from oms.services.switch import oms_switch_set
from oms.tests.factories import closed_position, open_position
from oms.tests.test_sweep import StubSource
from pricing.quotes import QuoteError
from pricing.sources.dummy import DummySource
from tests.support import run_together

pytestmark = pytest.mark.django_db
NO_QUOTE = "GONEUSDT"


@pytest.fixture(autouse=True)
def prices(settings, monkeypatch):
    """Dummy quotes at 100 for every symbol but NO_QUOTE, which has none."""
    settings.PRICE_SOURCE, settings.PRICE_EXCHANGE = "exchange", "dummy"
    real = DummySource.get_quote

    def quote(self, symbol):
        if symbol == NO_QUOTE:
            raise QuoteError(symbol, "symbol not found")
        return real(self, symbol)

    monkeypatch.setattr(DummySource, "get_quote", quote)


def stop(client, headers: dict | None = None, **body):
    body = {"timestamp": "2025-06-19T10:00:00Z", **body}
    return client.post("/signals/stop", data=json.dumps(body), content_type="application/json", **(headers or {}))


def audit_lines(settings) -> list[dict]:
    return [json.loads(line) for line in settings.AUDIT_LOG_PATH.read_text().splitlines()]


# --- the rule (pure) ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "side,current,new,price_now,allow_loosen,refused",
    [
        ("long", "98", "99", "100", False, ""),
        ("long", "98", "97", "100", False, "would loosen"),
        ("long", "98", "97", "100", True, ""),
        ("long", "98", "100", "100", False, "at or above the current price"),
        ("long", "98", "101", None, False, ""),  # no quote: the price check is skipped
        ("long", "98", "98", "100", False, "already at 98"),
        ("long", None, "90", "100", False, ""),
        ("short", "102", "101", "100", False, ""),
        ("short", "102", "103", "100", False, "would loosen"),
        ("short", "102", "100", "100", False, "at or below the current price"),
    ],
)
def test_a_stop_may_tighten_loosen_only_when_asked_and_never_cross_the_price(
    side, current, new, price_now, allow_loosen, refused
):
    answer = stop_move_refusal(
        side=side,
        current=Decimal(current) if current else None,
        new=Decimal(new),
        price_now=Decimal(price_now) if price_now else None,
        allow_loosen=allow_loosen,
    )
    assert (refused in answer) if refused else answer == ""


def test_the_stop_in_force_keeps_a_trail_that_is_already_tighter():
    kwargs = {"side": "long", "old_sl": Decimal("98")}
    assert stop_in_force(dynamic_sl=None, new_sl=Decimal("99"), **kwargs) is None  # static exits have none
    assert stop_in_force(dynamic_sl=Decimal("98"), new_sl=Decimal("99"), **kwargs) == Decimal("99")
    assert stop_in_force(dynamic_sl=Decimal("99.5"), new_sl=Decimal("99"), **kwargs) == Decimal("99.5")
    assert stop_in_force(dynamic_sl=Decimal("99.5"), new_sl=Decimal("99.7"), **kwargs) == Decimal("99.7")
    short = stop_in_force(side="short", old_sl=Decimal("102"), dynamic_sl=Decimal("101"), new_sl=Decimal("101.5"))
    assert short == Decimal("101")


# --- over the API -------------------------------------------------------------------------------------------


def test_a_stop_signal_moves_the_stop_and_answers_the_documented_body(anon_client, settings):
    position = open_position(entry="95", sl="93")
    response = stop(anon_client, position_id=position.pk, sl_price=97.5, signal_id="st-1")
    assert response.status_code == 200
    assert response.json() == {
        "received": True,
        "outcome": "stop_moved",
        "position_id": position.pk,
        "sl_price": 97.5,
        "previous_sl_price": 93.0,
        "sl_price_in_force": 97.5,
    }
    position.refresh_from_db()
    assert position.sl_price == Decimal("97.5") and position.dynamic_sl_price is None
    row = Signal.objects.get()
    assert (row.kind, row.outcome, row.position_id, row.symbol, row.dedupe_key) == (
        SignalKind.STOP,
        SignalOutcome.STOP_MOVED,
        position.pk,
        "BTCUSDT",
        "stop:id:st-1",
    )
    (line,) = audit_lines(settings)
    assert (line["signal_row_id"], line["kind"], line["outcome"]) == (row.pk, "stop", "stop_moved")
    assert line["response"] == response.json()
    assert not OperatorAction.objects.exists()  # the bot is no operator: its ledger is the Signal row


def test_break_even_is_the_entry_price(anon_client):
    position = open_position(entry="95", sl="93")
    body = stop(anon_client, position_id=position.pk, sl_price="break_even").json()
    assert (body["outcome"], body["sl_price"]) == ("stop_moved", 95.0)
    assert Position.objects.get().sl_price == Decimal("95")


def test_a_loosening_stop_is_refused_unless_the_signal_allows_it(anon_client):
    position = open_position(entry="100", sl="98.5")
    body = stop(anon_client, position_id=position.pk, sl_price=97, signal_id="loose-1").json()
    assert body["outcome"] == "not_moved" and "would loosen the stop (now 98.5)" in body["reason"]
    assert body["sl_price"] == 98.5 and Position.objects.get().sl_price == Decimal("98.5")
    body = stop(anon_client, position_id=position.pk, sl_price=97, allow_loosen=True, signal_id="loose-2").json()
    assert body["outcome"] == "stop_moved" and Position.objects.get().sl_price == Decimal("97")
    assert list(Signal.objects.order_by("id").values_list("outcome", flat=True)) == ["not_moved", "stop_moved"]


def test_a_short_stop_moves_down_and_is_refused_up(anon_client):
    position = open_position(side="short", entry="100", tp="95", sl="102")
    assert stop(anon_client, position_id=position.pk, sl_price=101, signal_id="s1").json()["outcome"] == "stop_moved"
    body = stop(anon_client, position_id=position.pk, sl_price=101.5, signal_id="s2").json()
    assert body["outcome"] == "not_moved" and Position.objects.get().sl_price == Decimal("101")


def test_a_stop_beyond_the_current_price_is_refused_and_without_a_quote_it_is_taken(anon_client):
    priced = open_position(entry="95", sl="93")
    body = stop(anon_client, position_id=priced.pk, sl_price=100.5).json()
    assert body["outcome"] == "not_moved" and "above the current price 100" in body["reason"]
    unpriced = open_position(symbol=NO_QUOTE, entry="95", sl="93")
    assert stop(anon_client, position_id=unpriced.pk, sl_price=100.5).json()["outcome"] == "stop_moved"


def test_a_position_named_by_its_fields_is_found_and_several_are_ambiguous(anon_client):
    mine = open_position(entry="95", sl="93", strategy="bounce_ema10_strict")
    open_position(entry="95", sl="93", strategy="other")
    open_position(side="short", entry="105", tp="100", sl="107", strategy="bounce_ema10_strict")
    body = stop(anon_client, symbol="btcusdt", side="BUY", sl_price=96).json()  # strategy and exchange default
    assert (body["outcome"], body["position_id"]) == ("stop_moved", mine.pk)
    twin = open_position(entry="95", sl="93", strategy="bounce_ema10_strict")
    body = stop(anon_client, symbol="BTCUSDT", side="long", sl_price=97).json()
    assert body["outcome"] == "ambiguous" and body["position_ids"] == [mine.pk, twin.pk]
    assert "send the position_id" in body["reason"]
    assert Position.objects.get(pk=mine.pk).sl_price == Decimal("96")


def test_nothing_to_move_is_a_clear_outcome(anon_client):
    closed = closed_position(pnl="-1.5", reason="sl")
    cases = [
        ({"position_id": 999_999}, "no_match", "position 999999 does not exist"),
        ({"symbol": "ETHUSDT", "side": "SELL"}, "no_match", "no open position with symbol=ETHUSDT side=short"),
        ({"position_id": closed.pk}, "already_closed", f"position {closed.pk} is already closed"),
    ]
    for target, outcome, reason in cases:
        response = stop(anon_client, sl_price=99, **target)
        assert response.status_code == 200
        body = response.json()
        assert (body["outcome"], body["received"]) == (outcome, True) and reason in body["reason"]
    assert list(Signal.objects.order_by("id").values_list("outcome", flat=True)) == [
        "no_match",
        "no_match",
        "already_closed",
    ]


def test_a_position_id_with_other_fields_must_be_that_position(anon_client):
    position = open_position(entry="95", sl="93")
    body = stop(anon_client, position_id=position.pk, symbol="ETHUSDT", sl_price=96).json()
    assert body["outcome"] == "no_match" and "symbol=BTCUSDT" in body["reason"]
    assert Position.objects.get().sl_price == Decimal("93")


@pytest.mark.parametrize(
    "body,field",
    [
        ({"sl_price": 99}, "position_id"),
        ({"position_id": 1, "sl_price": "99"}, "sl_price"),
        ({"position_id": 1, "sl_price": -1}, "sl_price"),
        ({"position_id": 1}, "sl_price"),
        ({"position_id": 1, "sl_price": 99, "allow_loosen": "yes"}, "allow_loosen"),
        ({"position_id": "1", "sl_price": 99}, "position_id"),
        ({"symbol": "BTCUSDT", "sl_price": 99}, "position_id"),
    ],
)
def test_an_invalid_stop_signal_is_a_400_recorded_as_rejected(anon_client, body, field):
    response = stop(anon_client, **body)
    assert response.status_code == 400
    assert response.json()["received"] is False and field in response.json()["errors"]
    row = Signal.objects.get()
    assert (row.kind, row.outcome) == (SignalKind.STOP, SignalOutcome.REJECTED)


def test_a_duplicate_stop_signal_is_answered_as_the_first(anon_client):
    position = open_position(entry="95", sl="93")
    first = stop(anon_client, position_id=position.pk, sl_price=96, signal_id="dup").json()
    again = stop(anon_client, position_id=position.pk, sl_price=97, signal_id="dup").json()
    assert again == {**first, "duplicate": True}
    assert Position.objects.get().sl_price == Decimal("96")
    by_header = stop(anon_client, {"HTTP_IDEMPOTENCY_KEY": "hdr"}, position_id=position.pk, sl_price=97).json()
    assert stop(anon_client, {"HTTP_IDEMPOTENCY_KEY": "hdr"}, position_id=position.pk, sl_price=98).json() == {
        **by_header,
        "duplicate": True,
    }
    assert Position.objects.get().sl_price == Decimal("97")
    assert list(Signal.objects.order_by("id").values_list("outcome", flat=True)) == [
        "stop_moved",
        "duplicate",
        "stop_moved",
        "duplicate",
    ]


def test_a_stop_signal_never_dedupes_against_the_entry_with_the_same_id(anon_client, signal_body):
    anon_client.post("/signals/bounce", signal_body(price=95, signal_id="same-id"), format="json")
    position = Position.objects.get()
    assert stop(anon_client, position_id=position.pk, sl_price=96, signal_id="same-id").json()["outcome"] == (
        "stop_moved"
    )


def test_stops_move_while_the_switch_is_off(anon_client):
    position = open_position(entry="95", sl="93")
    oms_switch_set(enabled=False, reason="maintenance", actor="olga", source="command")
    assert stop(anon_client, position_id=position.pk, sl_price=96).json()["outcome"] == "stop_moved"


def test_the_signal_position_lists_only_its_entry_signals(anon_client, signal_body):
    anon_client.post("/signals/bounce", signal_body(price=95), format="json")
    position = Position.objects.get()
    stop(anon_client, position_id=position.pk, sl_price=96)
    entry = Signal.objects.get(kind=SignalKind.ENTRY)
    listed = anon_client.get("/positions").json()["results"][0]
    assert listed["signal_ids"] == [entry.pk]
    kinds = {row["kind"] for row in anon_client.get("/signals").json()["results"]}
    assert kinds == {"entry", "stop"}
    assert [row["kind"] for row in anon_client.get("/signals?kind=stop").json()["results"]] == ["stop"]


# --- who may send it ----------------------------------------------------------------------------------------


def test_a_bot_token_may_move_a_stop_and_a_viewer_may_not(strict_api, bot_client, viewer_client, anon_client):
    position = open_position(entry="95", sl="93")
    assert stop(anon_client, position_id=position.pk, sl_price=96).status_code in (401, 403)
    assert stop(viewer_client, position_id=position.pk, sl_price=96).status_code == 403
    assert stop(bot_client, position_id=position.pk, sl_price=96).json()["outcome"] == "stop_moved"


def test_with_a_signing_secret_only_a_signed_stop_signal_is_taken(settings, strict_api, anon_client, bot_client):
    settings.SIGNAL_HMAC_SECRET = "stop-secret"
    position = open_position(entry="95", sl="93")
    raw = json.dumps({"position_id": position.pk, "sl_price": 96, "timestamp": "2025-06-19T10:00:00Z"}).encode()
    stamp = str(int(time.time()))
    assert stop(bot_client, position_id=position.pk, sl_price=96).status_code == 401  # a token alone
    wrong = anon_client.post(
        "/signals/stop",
        data=raw,
        content_type="application/json",
        HTTP_X_TIMESTAMP=stamp,
        HTTP_X_SIGNATURE=sign_body("wrong", stamp, raw),
    )
    assert wrong.status_code == 401 and Position.objects.get().sl_price == Decimal("93")
    signed = anon_client.post(
        "/signals/stop",
        data=raw,
        content_type="application/json",
        HTTP_X_TIMESTAMP=stamp,
        HTTP_X_SIGNATURE=sign_body("stop-secret", stamp, raw),
    )
    assert signed.json()["outcome"] == "stop_moved" and Position.objects.get().sl_price == Decimal("96")


# --- the sweep honours the moved stop ---------------------------------------------------------------------------


def test_a_moved_stop_closes_a_static_position_at_the_next_sweep(anon_client):
    position = open_position(entry="95", sl="93", created_at=timezone.now() - timedelta(minutes=5))
    stop(anon_client, position_id=position.pk, sl_price=97)
    auto_close_sweep(source=StubSource({"BTCUSDT": "96.9"}))
    position.refresh_from_db()
    assert (position.status, position.auto_close_reason) == ("closed", "sl")


def test_a_trailing_position_honours_a_tighter_stop_and_keeps_a_trail_ahead_of_a_looser_one(anon_client, settings):
    settings.TRAILING_ACTIVATION_PCT, settings.TRAILING_DISTANCE_PCT = Decimal("1"), Decimal("2")
    position = open_position(
        entry="90",
        tp="120",
        sl="88",
        exit_strategy="tp_sl_trailing_v1",
        created_at=timezone.now() - timedelta(minutes=5),
    )
    auto_close_sweep(source=StubSource({"BTCUSDT": "100"}))  # activates: the trail is at 98
    position.refresh_from_db()
    assert position.dynamic_sl_price == Decimal("98")
    body = stop(anon_client, position_id=position.pk, sl_price=95, allow_loosen=False, signal_id="t1").json()
    assert (body["sl_price"], body["sl_price_in_force"]) == (95.0, 98.0)  # the trail is ahead: still 98
    body = stop(anon_client, position_id=position.pk, sl_price=99, signal_id="t2").json()
    assert (body["sl_price"], body["sl_price_in_force"]) == (99.0, 99.0)
    auto_close_sweep(source=StubSource({"BTCUSDT": "98.9"}))  # above the old trail, below the new stop
    position.refresh_from_db()
    assert (position.status, position.auto_close_reason) == ("closed", "sl")


# --- the console ---------------------------------------------------------------------------------------------


def test_an_operator_moves_a_stop_from_the_console_and_it_is_audited(client, operator):
    position = open_position(entry="95", sl="93")
    client.force_login(operator)
    page = client.get(f"/console/positions/{position.pk}").content.decode()
    assert 'id="stop-form"' in page
    response = client.post(
        f"/console/positions/{position.pk}/stop", {"sl_price": "96", "reason": "support held"}, follow=True
    )
    assert "Stop of position" in response.content.decode()
    assert Position.objects.get().sl_price == Decimal("96")
    action = OperatorAction.objects.get()
    assert (action.action, action.actor, action.source, action.position_id, action.reason) == (
        "stop_move",
        "olga",
        "console",
        position.pk,
        "support held",
    )
    assert (action.details["from"], action.details["to"]) == ("93", "96")


def test_the_console_refuses_a_loosening_stop_unless_ticked_and_break_even_works(client, operator):
    position = open_position(entry="95", sl="93")
    client.force_login(operator)
    page = client.post(f"/console/positions/{position.pk}/stop", {"sl_price": "92"}, follow=True).content.decode()
    assert "was not moved" in page and "would loosen" in page
    client.post(f"/console/positions/{position.pk}/stop", {"sl_price": "92", "allow_loosen": "on"})
    assert Position.objects.get().sl_price == Decimal("92")
    client.post(f"/console/positions/{position.pk}/stop", {"break_even": "on"})
    assert Position.objects.get().sl_price == Decimal("95")
    assert OperatorAction.objects.filter(action="stop_move").count() == 2


def test_a_viewer_cannot_move_a_stop(client, viewer):
    position = open_position(entry="95", sl="93")
    client.force_login(viewer)
    assert 'id="stop-form"' not in client.get(f"/console/positions/{position.pk}").content.decode()
    assert client.post(f"/console/positions/{position.pk}/stop", {"sl_price": "96"}).status_code == 403
    assert Position.objects.get().sl_price == Decimal("93")


def test_the_service_records_an_operator_and_refuses_a_closed_position():
    position = open_position(entry="95", sl="93")
    result = position_stop_move(position_id=position.pk, sl_price=Decimal("96"), operator=Operator("olga", "api"))
    assert result.moved and OperatorAction.objects.get().action == "stop_move"
    closed = closed_position(pnl="1")
    result = position_stop_move(position_id=closed.pk, sl_price=Decimal("96"))
    assert not result.moved and "is closed" in result.refused


@pytest.mark.django_db(transaction=True)
def test_a_stop_move_racing_a_close_either_moves_it_first_or_finds_it_closed():
    for attempt in range(3):
        position = open_position(entry="95", sl="93")

        def by_signal(position=position, attempt=attempt) -> str:
            body = {
                "position_id": position.pk,
                "sl_price": 96,
                "timestamp": "2025-06-19T10:00:00Z",
                "signal_id": f"r{attempt}",
            }
            return stop_signal_ingest(payload=body).body["outcome"]

        def by_close(position=position) -> bool:
            return bool(close_positions([CloseInstruction(position.pk, Decimal("100"), "manual")]).closed)

        outcome, closed = run_together([by_signal, by_close])
        assert closed and outcome in ("stop_moved", "already_closed")
        position.refresh_from_db()
        assert position.status == "closed" and position.sl_price == (
            Decimal("96") if outcome == "stop_moved" else Decimal("93")
        )


def test_the_console_stop_form_refuses_a_price_the_signal_path_refuses_too():
    from oms.amounts import MAX_PRICE
    from oms.console.forms import StopMoveForm

    form = StopMoveForm({"sl_price": str(MAX_PRICE * 10), "reason": "typo"})
    assert not form.is_valid() and "sl_price" in form.errors
