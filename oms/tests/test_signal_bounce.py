"""The bot's wire contract for POST /signals/bounce (docs/CONTRACT.md §2)."""

import json
from decimal import Decimal

import pytest

from oms.models import OmsControl, Order, Position, Signal, SignalOutcome
from oms.services.switch import oms_switch_set

pytestmark = pytest.mark.django_db


def post(client, body, path="/signals/bounce", **headers):
    return client.post(path, data=json.dumps(body), content_type="application/json", **headers)


@pytest.mark.parametrize("path", ["/signals/bounce", "/signals/bounce/"])
def test_an_opened_signal_answers_exactly_the_documented_body(anon_client, signal_body, path):
    response = post(anon_client, signal_body(price=100), path)
    position = Position.objects.get()
    order = Order.objects.get()
    assert response.status_code == 200
    assert response.json() == {
        "received": True,
        "oms_enabled": True,
        "risk_ok": True,
        "order_id": order.pk,
        "position_id": position.pk,
        "tp_price": 104.5,
        "sl_price": 98.5,
        "qty": 1.0,
    }


def test_numbers_in_the_response_are_json_numbers(anon_client, signal_body):
    body = post(anon_client, signal_body(price=104812.4)).json()
    assert isinstance(body["tp_price"], float) and isinstance(body["sl_price"], float)
    assert f"{body['tp_price']:.4f}" == "109528.9580"


def test_opening_creates_position_entry_order_and_signal_together(anon_client, signal_body):
    post(anon_client, signal_body(symbol="ethusdt", side="sell", price=2000, tp_pct=2, sl_pct=1, qty=0.5))
    position = Position.objects.get()
    assert (position.symbol, position.side, position.qty) == ("ETHUSDT", "short", Decimal("0.5"))
    assert (position.tp_price, position.sl_price) == (Decimal("1960"), Decimal("2020"))
    assert position.strategy == "bounce_ema10_strict" and position.timeframe_min == 5
    order = position.orders.get()
    assert (order.purpose, order.status, order.price) == ("entry", "filled", Decimal("2000"))
    signal = Signal.objects.get()
    assert (signal.outcome, signal.position_id) == (SignalOutcome.OPENED, position.pk)


@pytest.mark.parametrize(
    "side,expected", [("BUY", "long"), ("buy", "long"), ("Long", "long"), ("SELL", "short"), ("short", "short")]
)
def test_side_is_normalised(anon_client, signal_body, side, expected):
    post(anon_client, signal_body(side=side))
    assert Position.objects.get().side == expected


def test_defaults_apply_when_optional_fields_are_missing_or_null(anon_client):
    post(
        anon_client,
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "price": 200,
            "timestamp": "2025-06-19T10:00:00+02:00",
            "tp_pct": None,
            "sl_pct": None,
        },
    )
    position = Position.objects.get()
    assert (position.exchange, position.timeframe_min, position.strategy) == ("bitget", 5, "bounce_ema10_strict")
    assert (position.tp_price, position.sl_price, position.qty) == (Decimal("209"), Decimal("197"), Decimal("1"))


def test_sizing_uses_default_notional_when_configured(anon_client, signal_body, settings):
    settings.DEFAULT_NOTIONAL_USDT = Decimal("50")
    post(anon_client, signal_body(price=200))
    assert Position.objects.get().qty == Decimal("0.25")


def test_request_qty_overrides_configured_sizing(anon_client, signal_body, settings):
    settings.DEFAULT_NOTIONAL_USDT = Decimal("50")
    post(anon_client, signal_body(price=200, qty=3))
    assert Position.objects.get().qty == Decimal("3")


def test_same_signal_id_twice_creates_nothing_twice_and_repeats_the_first_outcome(anon_client, signal_body):
    first = post(anon_client, signal_body(signal_id="abc-1")).json()
    second = post(anon_client, signal_body(signal_id="abc-1", price=101)).json()
    assert second == {**first, "duplicate": True}
    assert Position.objects.count() == 1 and Order.objects.count() == 1
    assert list(Signal.objects.order_by("id").values_list("outcome", flat=True)) == ["opened", "duplicate"]


def test_idempotency_key_header_is_the_signal_id(anon_client, signal_body):
    post(anon_client, signal_body(), HTTP_IDEMPOTENCY_KEY="k-1")
    body = post(anon_client, signal_body(), HTTP_IDEMPOTENCY_KEY="k-1").json()
    assert body["duplicate"] is True and Position.objects.count() == 1


def test_same_identity_at_the_same_instant_is_a_duplicate_whatever_the_utc_offset(anon_client, signal_body):
    post(anon_client, signal_body(timestamp="2025-06-19T10:00:00Z"))
    body = post(anon_client, signal_body(timestamp="2025-06-19T12:00:00+02:00")).json()
    assert body["duplicate"] is True and Position.objects.count() == 1


def test_different_strategy_is_not_a_duplicate(anon_client, signal_body):
    post(anon_client, signal_body(timestamp="2025-06-19T10:00:00Z"))
    body = post(anon_client, signal_body(timestamp="2025-06-19T10:00:00Z", strategy="other")).json()
    assert "duplicate" not in body and Position.objects.count() == 2


def test_switch_off_creates_nothing_and_says_so(anon_client, signal_body):
    oms_switch_set(enabled=False, actor="olga", reason="exchange maintenance")
    response = post(anon_client, signal_body())
    assert response.status_code == 200
    assert response.json() == {
        "received": True,
        "oms_enabled": False,
        "risk_ok": False,
        "reason": "OMS switched off by olga: exchange maintenance",
    }
    assert Position.objects.count() == 0 and Order.objects.count() == 0
    assert Signal.objects.get().outcome == SignalOutcome.OMS_DISABLED


def test_environment_forces_the_switch_off(anon_client, signal_body, settings):
    settings.OMS_ENABLED = False
    assert OmsControl.load().enabled
    body = post(anon_client, signal_body()).json()
    assert body["oms_enabled"] is False and "OMS_ENABLED=false" in body["reason"]
    assert Position.objects.count() == 0


def test_switching_back_on_takes_effect_for_the_next_signal(anon_client, signal_body):
    oms_switch_set(enabled=False, actor="olga", reason="pause")
    oms_switch_set(enabled=True, actor="olga", reason="resume")
    assert post(anon_client, signal_body()).json()["risk_ok"] is True


def test_risk_block_creates_nothing_and_gives_the_reason(anon_client, signal_body, settings):
    settings.MAX_OPEN_POSITIONS = 1
    post(anon_client, signal_body())
    response = post(anon_client, signal_body())
    assert response.json() == {
        "received": True,
        "oms_enabled": True,
        "risk_ok": False,
        "risk_reason": "max_total_open_reached (total=1, limit=1)",
    }
    assert Position.objects.count() == 1
    blocked = Signal.objects.get(outcome=SignalOutcome.RISK_BLOCKED)
    assert blocked.reason == "max_total_open_reached (total=1, limit=1)" and blocked.position is None


def test_per_symbol_limit_leaves_other_symbols_open(anon_client, signal_body, settings):
    settings.MAX_OPEN_POSITIONS_PER_SYMBOL = 1
    post(anon_client, signal_body(symbol="BTCUSDT"))
    assert post(anon_client, signal_body(symbol="BTCUSDT")).json()["risk_reason"] == (
        "max_symbol_open_reached (symbol=BTCUSDT, count=1, limit=1)"
    )
    assert post(anon_client, signal_body(symbol="ETHUSDT")).json()["risk_ok"] is True


def test_size_limit_blocks_large_positions(anon_client, signal_body, settings):
    settings.MAX_SIZE_PER_POSITION_USDT = Decimal("150")
    body = post(anon_client, signal_body(price=100, qty=2)).json()
    assert body["risk_reason"] == "max_size_per_position_exceeded (notional=200, limit=150)"


def test_every_signal_is_appended_to_the_audit_log(anon_client, signal_body, settings):
    post(anon_client, signal_body(signal_id="s1"))
    post(anon_client, signal_body(signal_id="s1"))
    post(anon_client, {"symbol": "BTC/USDT"})
    lines = [json.loads(line) for line in settings.AUDIT_LOG_PATH.read_text().splitlines()]
    assert [line["outcome"] for line in lines] == ["opened", "duplicate", "rejected"]
    assert lines[0]["payload"]["signal_id"] == "s1"


BAD_INPUT = [
    ({"symbol": ...}, "symbol"),
    ({"side": ...}, "side"),
    ({"price": ...}, "price"),
    ({"timestamp": ...}, "timestamp"),
    ({"price": 0}, "price"),
    ({"price": -5}, "price"),
    ({"price": "100"}, "price"),
    ({"price": True}, "price"),
    ({"side": "up"}, "side"),
    ({"symbol": "BTC/USDT"}, "symbol"),
    ({"symbol": "B" * 200}, "symbol"),
    ({"tp_pct": 0}, "tp_pct"),
    ({"tp_pct": 150}, "tp_pct"),
    ({"sl_pct": -1}, "sl_pct"),
    ({"timeframe_min": "5m"}, "timeframe_min"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"qty": 0}, "qty"),
]


@pytest.mark.parametrize("overrides,field", BAD_INPUT)
def test_bad_input_is_400_with_the_field_named_and_nothing_opened(anon_client, signal_body, overrides, field):
    response = post(anon_client, signal_body(**overrides))
    assert response.status_code == 400
    body = response.json()
    assert body["received"] is False and field in body["errors"]
    assert Position.objects.count() == 0
    assert Signal.objects.get().outcome == SignalOutcome.REJECTED


REST_OF_BODY = '"symbol": "BTCUSDT", "side": "BUY", "timestamp": "2025-06-19T10:00:00Z"'


@pytest.mark.parametrize("raw", [f'{{"price": NaN, {REST_OF_BODY}}}', f'{{"price": Infinity, {REST_OF_BODY}}}'])
def test_nan_and_infinity_prices_are_refused(anon_client, raw):
    response = anon_client.post("/signals/bounce", data=raw, content_type="application/json")
    assert response.status_code == 400 and response.json()["received"] is False
    assert Position.objects.count() == 0


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", "42", ""])
def test_a_body_that_is_not_a_json_object_is_refused(anon_client, raw):
    response = anon_client.post("/signals/bounce", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["received"] is False
    assert Position.objects.count() == 0


@pytest.mark.parametrize(
    "field,value", [("symbol", "BTC\x00USDT"), ("strategy", "a\x00b"), ("exit_strategy", "x\x00y"), ("side", "\x00")]
)
def test_nul_characters_are_a_clear_400_and_the_signal_is_still_recorded(anon_client, signal_body, field, value):
    response = post(anon_client, signal_body(**{field: value}))
    assert response.status_code == 400 and field in response.json()["errors"]
    recorded = Signal.objects.get()
    assert recorded.outcome == SignalOutcome.REJECTED
    assert recorded.payload[field] == value.replace("\x00", "\ufffd")  # PostgreSQL refuses NUL


def test_the_reused_validator_carries_nothing_from_one_body_to_the_next(signal_body):
    """Each thread validates with one serializer instance (oms.signal_input._serializer): a bad body's
    errors never reach the next body, and a good body's values never fill the next one's gaps."""
    from concurrent.futures import ThreadPoolExecutor

    from oms.signal_input import SignalInvalid, parse_bounce_signal

    def outcome(body: dict) -> object:
        try:
            return parse_bounce_signal(body)
        except SignalInvalid as exc:
            return exc.errors

    body = signal_body()
    full = {**body, "qty": 2, "strategy": "alpha", "signal_id": "s-1"}
    bad = {**body, "price": "cheap", "side": "UP"}
    bare = {key: body[key] for key in ("symbol", "side", "price", "timestamp")}
    first = outcome(full)
    assert first.qty == 2 and first.strategy == "alpha" and first.signal_id == "s-1"
    assert set(outcome(bad)) == {"price", "side"}
    later = outcome(bare)
    assert later.qty != 2 and later.strategy != "alpha" and later.signal_id is None
    assert set(outcome({**bare, "timeframe_min": 0})) == {"timeframe_min"}
    with ThreadPoolExecutor(max_workers=4) as pool:  # one instance per thread, none shared
        answers = list(pool.map(outcome, [full, bad, bare, full] * 25))
    assert [type(a).__name__ for a in answers[:4]] == ["BounceSignal", "dict", "BounceSignal", "BounceSignal"]
    assert all(a == b for a, b in zip(answers, [first, outcome(bad), later, first] * 25, strict=True))
