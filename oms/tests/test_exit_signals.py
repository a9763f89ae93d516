"""Issue #12 §1: `POST /signals/exit` closes the open position it names, wholly or a fraction of what
is still open, through the one close path; every outcome recorded and answered (docs/CONTRACT.md §2a)."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from oms.api.hmac_auth import sign_body
from oms.models import CloseReason, Order, OrderPurpose, Position, PositionStatus, Signal, SignalKind, SignalOutcome
from oms.services.closing import CloseInstruction, close_positions
from oms.services.exit_signals import exit_signal_ingest
from oms.services.switch import oms_switch_set
from oms.signal_input import SignalInvalid, parse_exit_signal
from oms.tests.factories import closed_position, open_position
from pricing.quotes import QuoteError
from pricing.sources.dummy import DummySource
from tests.support import run_together

NO_QUOTE = "GONEUSDT"
STAMP = "2025-06-19T10:00:00Z"


@pytest.fixture(autouse=True)
def unquoted(settings, monkeypatch) -> set[str]:
    """Dummy quotes at 100 for every symbol but those in the returned set (NO_QUOTE); no slippage, no
    fee (exact figures)."""
    settings.PRICE_SOURCE, settings.PRICE_EXCHANGE = "exchange", "dummy"
    settings.PAPER_SLIPPAGE_BPS, settings.PAPER_FEE_RATE = Decimal("0"), Decimal("0")
    real, symbols = DummySource.get_quote, {NO_QUOTE}

    def quote(self, symbol):
        if symbol in symbols:
            raise QuoteError(symbol, "symbol not found")
        return real(self, symbol)

    monkeypatch.setattr(DummySource, "get_quote", quote)
    return symbols


def exit_(client, headers: dict | None = None, **body):
    body = {"timestamp": STAMP, **body}
    return client.post("/signals/exit", data=json.dumps(body), content_type="application/json", **(headers or {}))


def exits_booked(position: Position) -> list[Decimal]:
    return list(Order.objects.filter(position=position, purpose=OrderPurpose.EXIT).values_list("qty", flat=True))


def audit_lines(settings) -> list[dict]:
    return [json.loads(line) for line in settings.AUDIT_LOG_PATH.read_text().splitlines()]


# --- parsing ----------------------------------------------------------------------------------------------


def test_an_exit_names_its_position_by_id_or_by_the_fields_of_its_entry(settings):
    by_id = parse_exit_signal({"position_id": 7, "timestamp": STAMP, "fraction": 1})
    assert (by_id.target.position_id, by_id.target.strategy, by_id.fraction) == (7, None, None)  # 1: the whole
    by_fields = parse_exit_signal({"symbol": "ethusdt", "side": "SELL", "timestamp": STAMP, "fraction": 0.25})
    target = by_fields.target
    assert (target.symbol, target.side, target.strategy, target.exchange) == (
        "ETHUSDT",
        "short",
        "bounce_ema10_strict",
        settings.DEFAULT_EXCHANGE,
    )
    assert by_fields.fraction == Decimal("0.25")


def test_the_dedupe_key_is_per_kind_and_follows_the_header_when_the_body_has_no_id():
    keyed = parse_exit_signal({"position_id": 7, "timestamp": STAMP}, idempotency_key="k-9")
    assert keyed.dedupe_key == "exit:id:k-9"
    body = {"position_id": 7, "timestamp": STAMP}
    assert parse_exit_signal(body).dedupe_key == parse_exit_signal(dict(body)).dedupe_key
    assert parse_exit_signal(body).dedupe_key != parse_exit_signal({**body, "fraction": 0.5}).dedupe_key


@pytest.mark.parametrize(
    "body,field",
    [
        ({"position_id": 1, "fraction": 0}, "fraction"),
        ({"position_id": 1, "fraction": 1.5}, "fraction"),
        ({"position_id": 1, "fraction": "0.5"}, "fraction"),
        ({"position_id": 1, "fraction": True}, "fraction"),
        ({"position_id": 0}, "position_id"),
        ({"position_id": True}, "position_id"),
        ({"symbol": "BTCUSDT"}, "position_id"),
        ({"side": "BUY"}, "position_id"),
        ({"position_id": 1, "signal_id": "x" * 65}, "signal_id"),
        ({"position_id": 1, "timestamp": "yesterday"}, "timestamp"),
    ],
)
def test_an_invalid_exit_is_refused_naming_the_field(body, field):
    with pytest.raises(SignalInvalid) as refused:
        parse_exit_signal({"timestamp": STAMP, **body})
    assert field in refused.value.errors


@pytest.mark.django_db
def test_an_invalid_exit_is_a_400_recorded_and_audited(anon_client, settings):
    response = exit_(anon_client, position_id=1, fraction=2)
    assert response.status_code == 400
    assert response.json() == {
        "received": False,
        "errors": {"fraction": ["Must be at most 1 (1 closes the whole position)."]},
    }
    row = Signal.objects.get()
    assert (row.kind, row.outcome) == (SignalKind.EXIT, SignalOutcome.REJECTED)
    assert audit_lines(settings)[0]["outcome"] == "rejected"
    broken = anon_client.post("/signals/exit", data=b"{not json", content_type="application/json")
    assert broken.status_code == 400 and Signal.objects.filter(kind=SignalKind.EXIT).count() == 2


# --- the outcomes over the API ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_exit_closes_the_whole_position_and_answers_the_documented_body(anon_client, settings):
    position = open_position(entry="90", qty="2")
    response = exit_(anon_client, position_id=position.pk, signal_id="ex-1")
    assert response.status_code == 200
    position.refresh_from_db()
    assert (position.status, position.auto_close_reason) == (PositionStatus.CLOSED, CloseReason.SIGNAL)
    assert response.json() == {
        "received": True,
        "outcome": "closed",
        "position_id": position.pk,
        "closed_qty": 2.0,
        "remaining_qty": 0.0,
        "close_price": float(position.close_price),
        "pnl": float(position.pnl),
    }
    assert position.pnl == (position.close_price - Decimal("90")) * 2
    row = Signal.objects.get()
    assert (row.kind, row.outcome, row.position_id, row.dedupe_key) == ("exit", "closed", position.pk, "exit:id:ex-1")
    (line,) = audit_lines(settings)
    assert (line["signal_row_id"], line["kind"], line["outcome"], line["response"]) == (
        row.pk,
        "exit",
        "closed",
        response.json(),
    )


@pytest.mark.django_db
def test_a_fraction_closes_part_of_what_is_still_open(anon_client):
    position = open_position(entry="90", qty="2")
    body = exit_(anon_client, position_id=position.pk, fraction=0.25, signal_id="p1").json()
    position.refresh_from_db()
    assert position.status == PositionStatus.OPEN and position.qty == Decimal("1.5")
    assert body == {
        "received": True,
        "outcome": "partially_closed",
        "position_id": position.pk,
        "closed_qty": 0.5,
        "remaining_qty": 1.5,
        "realized_pnl": 5.0,  # 0.5 × (100 − 90), no fees here
    }
    body = exit_(anon_client, position_id=position.pk, fraction=0.5, signal_id="p2").json()
    assert (body["closed_qty"], body["remaining_qty"]) == (0.75, 0.75)  # half of what was left
    body = exit_(anon_client, position_id=position.pk, signal_id="p3").json()
    assert (body["outcome"], body["closed_qty"], body["remaining_qty"], body["pnl"]) == ("closed", 0.75, 0.0, 20.0)
    assert sum(exits_booked(position)) == Decimal("2")
    assert Position.objects.get().auto_close_reason == CloseReason.SIGNAL


@pytest.mark.django_db
def test_an_exit_by_fields_finds_the_one_open_position_of_its_entry(anon_client, signal_body):
    anon_client.post("/signals/bounce", signal_body(symbol="ETHUSDT", side="SELL", price=100), format="json")
    short = Position.objects.get()
    open_position(symbol="ETHUSDT", side="long", strategy="bounce_ema10_strict")
    open_position(symbol="ETHUSDT", side="short", strategy="another")
    body = exit_(anon_client, symbol="ETHUSDT", side="SELL", exchange="bitget").json()
    assert (body["outcome"], body["position_id"]) == ("closed", short.pk)
    entry, exit_row = Signal.objects.order_by("id")
    assert exit_row.position_id == short.pk and entry.kind == SignalKind.ENTRY
    listed = anon_client.get("/positions?symbol=ETHUSDT&side=short&strategy=bounce_ema10_strict").json()
    assert listed["results"][0]["signal_ids"] == [entry.pk]


@pytest.mark.django_db
def test_several_matching_positions_are_ambiguous_and_nothing_closes(anon_client):
    first = open_position(strategy="bounce_ema10_strict")
    second = open_position(strategy="bounce_ema10_strict")
    response = exit_(anon_client, symbol="BTCUSDT", side="long")
    assert response.status_code == 200
    body = response.json()
    assert (body["outcome"], body["position_ids"], body["position_id"]) == ("ambiguous", [first.pk, second.pk], None)
    assert "send the position_id of one" in body["reason"]
    assert Position.objects.open().count() == 2


@pytest.mark.django_db
def test_nothing_to_close_is_a_clear_outcome(anon_client):
    closed = closed_position(pnl="3", reason="tp")
    position = open_position(strategy="bounce_ema10_strict")
    cases = [
        ({"position_id": 424242}, "no_match", "position 424242 does not exist"),
        ({"symbol": "BTCUSDT", "side": "short"}, "no_match", "no open position with symbol=BTCUSDT side=short"),
        ({"symbol": "BTCUSDT", "side": "long", "strategy": "x"}, "no_match", "strategy=x"),
        ({"position_id": position.pk, "side": "short"}, "no_match", "side=long"),
        ({"position_id": closed.pk}, "already_closed", f"position {closed.pk} is already closed"),
    ]
    for target, outcome, reason in cases:
        response = exit_(anon_client, **target)
        body = response.json()
        assert response.status_code == 200 and body["outcome"] == outcome and reason in body["reason"], body
    assert exit_(anon_client, position_id=closed.pk).json()["auto_close_reason"] == "tp"
    assert Position.objects.get(pk=position.pk).is_open


@pytest.mark.django_db
def test_a_duplicate_exit_is_answered_as_the_first_and_closes_nothing_more(anon_client):
    position = open_position(qty="2")
    first = exit_(anon_client, position_id=position.pk, fraction=0.5, signal_id="once").json()
    again = exit_(anon_client, position_id=position.pk, fraction=0.5, signal_id="once").json()
    assert again == {**first, "duplicate": True}
    assert Position.objects.get().qty == Decimal("1")
    header = {"HTTP_IDEMPOTENCY_KEY": "hdr-1"}
    exit_(anon_client, header, position_id=position.pk, fraction=0.5)
    exit_(anon_client, header, position_id=position.pk, fraction=0.5)
    assert Position.objects.get().qty == Decimal("0.5")
    assert list(Signal.objects.order_by("id").values_list("outcome", flat=True)) == [
        "partially_closed",
        "duplicate",
        "partially_closed",
        "duplicate",
    ]


@pytest.mark.django_db
def test_an_exit_never_dedupes_against_its_entry_with_the_same_signal_id(anon_client, signal_body):
    anon_client.post("/signals/bounce", signal_body(signal_id="trade-7"), format="json")
    body = exit_(anon_client, position_id=Position.objects.get().pk, signal_id="trade-7").json()
    assert body["outcome"] == "closed"


@pytest.mark.django_db
def test_exits_are_carried_out_while_the_switch_is_off(anon_client):
    position = open_position()
    oms_switch_set(enabled=False, reason="daily loss", actor="trips", source="command")
    assert exit_(anon_client, position_id=position.pk).json()["outcome"] == "closed"


@pytest.mark.django_db
def test_without_a_price_the_exit_fails_with_503_and_may_be_sent_again(anon_client, unquoted):
    position = open_position(symbol=NO_QUOTE)
    response = exit_(anon_client, position_id=position.pk, signal_id="retry-me")
    assert response.status_code == 503
    body = response.json()
    assert (body["received"], body["outcome"], body["error"]) == (True, "failed", "price_unavailable")
    assert Position.objects.get().is_open
    failed = Signal.objects.get()
    assert (failed.outcome, failed.dedupe_key) == (SignalOutcome.FAILED, None)
    unquoted.clear()  # quoted again: the same signal is carried out this time
    assert exit_(anon_client, position_id=position.pk, signal_id="retry-me").json()["outcome"] == "closed"


# --- who may send it ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_bot_token_may_send_an_exit_and_a_viewer_may_not(strict_api, bot_client, viewer_client, anon_client):
    position = open_position()
    assert exit_(anon_client, position_id=position.pk).status_code in (401, 403)
    refused = exit_(viewer_client, position_id=position.pk)
    assert refused.status_code == 403 and refused.json()["received"] is False
    assert Position.objects.get().is_open
    assert exit_(bot_client, position_id=position.pk).json()["outcome"] == "closed"


@pytest.mark.django_db
def test_with_a_signing_secret_only_a_signed_exit_is_taken(settings, strict_api, anon_client, bot_client):
    settings.SIGNAL_HMAC_SECRET = "exit-secret"
    position = open_position()
    raw = json.dumps({"position_id": position.pk, "timestamp": STAMP}).encode()
    stamp = str(int(time.time()))
    assert exit_(bot_client, position_id=position.pk).status_code == 401  # a token alone
    replayed_key = anon_client.post(
        "/signals/exit",
        data=raw,
        content_type="application/json",
        HTTP_X_TIMESTAMP=stamp,
        HTTP_X_SIGNATURE=sign_body("exit-secret", stamp, raw),
        HTTP_IDEMPOTENCY_KEY="not-signed",
    )
    assert replayed_key.status_code == 401 and Position.objects.get().is_open
    signed = anon_client.post(
        "/signals/exit",
        data=raw,
        content_type="application/json",
        HTTP_X_TIMESTAMP=stamp,
        HTTP_X_SIGNATURE=sign_body("exit-secret", stamp, raw),
    )
    assert signed.json()["outcome"] == "closed"


# --- races ------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_exit_racing_the_sweep_books_exactly_one_close():
    for attempt in range(3):
        position = open_position(entry="95")

        def by_exit(position=position, attempt=attempt) -> str:
            body = {"position_id": position.pk, "timestamp": STAMP, "signal_id": f"race-{attempt}"}
            return exit_signal_ingest(payload=body).body["outcome"]

        def by_sweep(position=position) -> str:  # the sweep books through the same close path
            closed = close_positions([CloseInstruction(position.pk, Decimal("104.5"), CloseReason.TP)]).closed
            return "tp" if closed else "late"

        outcomes = run_together([by_exit, by_sweep])
        assert sorted(outcomes) in (["already_closed", "tp"], ["closed", "late"])
        position.refresh_from_db()
        assert position.status == PositionStatus.CLOSED and len(exits_booked(position)) == 1
        assert position.auto_close_reason == ("tp" if "tp" in outcomes else "signal")


@pytest.mark.django_db(transaction=True)
def test_concurrent_partial_exits_never_close_more_than_the_position_holds():
    position = open_position(qty="1")
    fractions = ["0.6", "0.6", "1", "0.5", "0.6"]

    def by_exit(index: int) -> dict:
        body = {
            "position_id": position.pk,
            "timestamp": STAMP,
            "fraction": float(fractions[index]),
            "signal_id": f"p{index}",
        }
        return exit_signal_ingest(payload=body).body

    answers = run_together([lambda i=i: by_exit(i) for i in range(len(fractions))])
    position.refresh_from_db()
    booked = exits_booked(position)
    assert position.status == PositionStatus.CLOSED and sum(booked) == Decimal("1")
    assert sum(Decimal(str(a.get("closed_qty", 0))) for a in answers) == Decimal("1")
    assert [a["outcome"] for a in answers].count("closed") == 1
    assert all(a["outcome"] in ("closed", "partially_closed", "already_closed") for a in answers)


@pytest.mark.django_db(transaction=True)
def test_the_same_partial_exit_sent_at_once_closes_once():
    position = open_position(qty="1")
    body = {"position_id": position.pk, "timestamp": STAMP, "fraction": 0.5, "signal_id": "burst"}
    answers = run_together([lambda: exit_signal_ingest(payload=dict(body)).body for _ in range(6)])
    position.refresh_from_db()
    assert position.qty == Decimal("0.5") and exits_booked(position) == [Decimal("0.5")]
    assert sum(1 for a in answers if a.get("duplicate")) == 5
