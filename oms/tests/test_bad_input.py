"""Issue #9 §1 (intake) and §4: bad input is a JSON 400 naming the field, recorded as a rejected
signal with a valid audit line, never a 500 and never a row that poisons the book."""

from __future__ import annotations

import json
from decimal import Decimal
from unittest import mock

import pytest
from django.db import OperationalError

from oms.models import Order, Position, Signal, SignalOutcome
from oms.tests.factories import open_position

pytestmark = pytest.mark.django_db

VALID = (
    '{"symbol": "BTCUSDT", "side": "BUY", "price": 100, "timestamp": "2025-06-19T10:15:00Z", '
    '"tp_pct": 4.5, "sl_pct": 1.5'
)


def post_raw(client, text: str | bytes, path: str = "/signals/bounce", **headers):
    return client.generic("POST", path, text, content_type="application/json", **headers)


def post(client, body: dict, path: str = "/signals/bounce", **headers):
    return post_raw(client, json.dumps(body), path, **headers)


def strict_json(text: str):
    """What any JSON reader accepts: no bare NaN/Infinity."""

    def refuse(constant):
        raise ValueError(f"bare {constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def audit_lines(settings) -> list[dict]:
    with open(settings.AUDIT_LOG_PATH, encoding="utf-8") as handle:
        return [strict_json(line) for line in handle]


def assert_recorded_400(response, settings, field: str) -> Signal:
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["received"] is False and field in body["errors"], body
    row = Signal.objects.get()
    assert row.outcome == SignalOutcome.REJECTED and field in row.reason
    assert json.loads(json.dumps(row.payload, allow_nan=False)) == row.payload  # storable as real JSON
    [line] = audit_lines(settings)
    assert line["signal_row_id"] == row.pk and line["outcome"] == "rejected"
    assert Position.objects.count() == 0 and Order.objects.count() == 0
    return row


# --- §1: amounts the columns cannot hold are refused at the door ---------------------------------------


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"qty": 1e-11}, "qty"),
        ({"qty": 0.12345678901}, "qty"),  # 11 places: the column would round it
        ({"price": 1e-11}, "price"),
        ({"price": 100.00000000001}, "price"),
        ({"price": 9e11, "qty": 9e11}, "notional"),
        ({"price": 1e6, "qty": 1e9}, "notional"),  # PnL of a 1000-fold move could overflow 18 digits
        ({"side": "SELL", "tp_pct": 99.99999999999}, "tp_pct"),  # a short's TP would be stored as 0
        ({"side": "BUY", "sl_pct": 99.99999999999}, "sl_pct"),  # a long's SL would be stored as 0
        ({"price": 1e-10, "tp_pct": 0.01}, "tp_pct"),  # the TP rounds onto the entry price
    ],
)
def test_amounts_the_columns_cannot_hold_are_a_400_naming_the_field(
    anon_client, signal_body, settings, overrides, field
):
    response = post(anon_client, signal_body(**overrides))
    assert_recorded_400(response, settings, field)


def test_a_refused_tiny_qty_does_not_stop_the_next_signal_from_opening(anon_client, signal_body):
    assert post(anon_client, signal_body(symbol="ETHUSDT", qty=1e-11)).status_code == 400
    response = post(anon_client, signal_body(symbol="ETHUSDT"))
    assert response.status_code == 200 and response.json()["risk_ok"] is True
    assert Position.objects.get().qty == Decimal("1")


def test_the_smallest_and_largest_storable_amounts_still_open(anon_client, signal_body):
    assert post(anon_client, signal_body(price=100, qty=1e-10)).status_code == 200
    assert post(anon_client, signal_body(price=1e5, qty=9e8)).status_code == 200  # notional 9e13, TP 9.405e13
    assert post(anon_client, signal_body(price=0.0001234567, qty=1)).status_code == 200
    assert Position.objects.count() == 3


def test_default_sizing_that_rounds_to_zero_is_refused_naming_qty(anon_client, signal_body, settings):
    settings.DEFAULT_NOTIONAL_USDT = Decimal("0.0000001")
    response = post(anon_client, signal_body(price=9e11))
    assert_recorded_400(response, settings, "qty")


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"qty": 1e-11}, "qty"),
        ({"entry_price": 1e-11}, "entry_price"),
        ({"entry_price": 9e11, "qty": 9e11}, "notional"),
        ({"tp_price": 110.00000000001}, "tp_price"),
        ({"sl_price": 1e-11}, "sl_price"),
        ({"entry_price": 1, "qty": 9e11, "tp_price": 9e11}, "tp_price"),  # the PnL at TP could overflow
    ],
)
def test_manual_orders_refuse_amounts_the_columns_cannot_hold(operator_client, overrides, field):
    body = {
        "symbol": "BTCUSDT",
        "side": "long",
        "qty": 1,
        "entry_price": 100,
        "tp_price": 110,
        "sl_price": 90,
        **overrides,
    }
    response = operator_client.post("/orders", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert Position.objects.count() == 0


# --- §4: each bad body is a JSON 400, recorded, with a valid audit line --------------------------------


@pytest.mark.parametrize(
    "text,field",
    [
        (VALID.replace('"price": 100', '"price": 1e309') + "}", "price"),
        (VALID.replace('"price": 100', '"price": -1e400') + "}", "price"),
        (VALID + ', "extra": 1e400}', "extra"),  # an unknown field: the audit line held a bare Infinity
        (VALID + ', "meta": {"deep": [1, 1e999]}}', "meta.deep[1]"),
    ],
)
def test_numbers_that_overflow_to_infinity_are_a_recorded_400(anon_client, settings, text, field):
    row = assert_recorded_400(post_raw(anon_client, text), settings, field)
    assert "Infinity" in json.dumps(row.payload)


@pytest.mark.parametrize("length", [65, 100])
def test_a_signal_id_longer_than_the_column_is_a_recorded_400(anon_client, signal_body, settings, length):
    assert_recorded_400(post(anon_client, signal_body(signal_id="s" * length)), settings, "signal_id")


def test_an_idempotency_key_longer_than_the_column_is_a_recorded_400(anon_client, signal_body, settings):
    response = post(anon_client, signal_body(), HTTP_IDEMPOTENCY_KEY="k" * 65)
    assert_recorded_400(response, settings, "Idempotency-Key")


def test_the_longest_signal_id_and_idempotency_key_still_open(anon_client, signal_body):
    assert post(anon_client, signal_body(signal_id="s" * 64)).status_code == 200
    assert post(anon_client, signal_body(), HTTP_IDEMPOTENCY_KEY="k" * 64).status_code == 200
    assert sorted(Position.objects.values_list("external_order_id", flat=True)) == ["k" * 64, "s" * 64]


@pytest.mark.parametrize("field", ["strategy", "symbol", "signal_id", "exchange"])
def test_a_lone_surrogate_is_a_recorded_400(anon_client, settings, field):
    row = assert_recorded_400(post_raw(anon_client, VALID + f', "{field}": "a\\ud800b"}}'), settings, field)
    assert row.payload[field] == "a\ufffdb"


def test_a_lone_surrogate_in_an_unknown_field_is_stored_without_it(anon_client):
    assert post_raw(anon_client, VALID + ', "note": "a\\udfffb"}').status_code == 200
    assert Signal.objects.get().payload["note"] == "a\ufffdb"


@pytest.mark.parametrize("depth", [900, 5000])
def test_json_nested_too_deep_is_a_recorded_400(anon_client, settings, depth):
    row = assert_recorded_400(post_raw(anon_client, "[" * depth + "]" * depth), settings, "body")
    assert row.payload["raw"].startswith("[[[")


def test_json_nested_too_deep_in_a_field_is_a_recorded_400(anon_client, settings):
    assert_recorded_400(post_raw(anon_client, VALID + ', "x": ' + "[" * 900 + "]" * 900 + "}"), settings, "body")


@pytest.mark.parametrize(
    "text", ["{not json", VALID + ', "price": NaN}', VALID + ', "qty": Infinity}', b'{"symbol": "\xff\xfe"}']
)
def test_malformed_json_and_nan_are_a_recorded_400(anon_client, settings, text):
    row = assert_recorded_400(post_raw(anon_client, text), settings, "body")
    assert set(row.payload) == {"raw"}


def test_a_body_over_the_size_limit_is_a_recorded_json_400(anon_client, signal_body, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    row = assert_recorded_400(post(anon_client, signal_body(strategy="x" * 2000)), settings, "body")
    assert "1000" in row.reason


def test_a_body_over_the_size_limit_elsewhere_is_a_json_400(operator_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = operator_client.post("/oms/switch", {"enabled": False, "reason": "x" * 2000}, format="json")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"


@pytest.mark.parametrize("message", ["database is locked", "canceling statement due to lock timeout"])
def test_a_database_lock_held_past_its_timeout_is_a_json_503_with_retry_after(
    anon_client, signal_body, settings, message
):
    with mock.patch("oms.services.signals.lock_oms_control", side_effect=OperationalError(message)):
        response = post(anon_client, signal_body())
    assert response.status_code == 503 and response["Content-Type"] == "application/json"
    assert int(response["Retry-After"]) > 0
    assert response.json()["received"] is False and response.json()["error"] == "database_busy"
    [line] = audit_lines(settings)
    assert line["outcome"] == "error"


def test_a_signal_rolled_back_with_its_write_batch_is_a_503_to_retry(anon_client, signal_body, settings):
    """Another signal of its batch broke the shared transaction (lomsite/groupcommit.py)."""
    from lomsite.groupcommit import BatchAborted

    with mock.patch("oms.services.signals.lock_oms_control", side_effect=BatchAborted("rolled back")):
        response = post(anon_client, signal_body())
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    assert response.json()["error"] == "database_busy"
    assert not Position.objects.exists()


def test_other_database_errors_are_not_disguised_as_a_busy_database(anon_client, signal_body):
    anon_client.raise_request_exception = True
    with mock.patch("oms.services.signals.lock_oms_control", side_effect=OperationalError("disk I/O error")):
        with pytest.raises(OperationalError):
            post(anon_client, signal_body())


# --- ids in the path, console filters ----------------------------------------------------------------


@pytest.mark.parametrize("segment", ["%C2%B2", "%D9%A1", "%EF%BC%91", "1%20", "+1", "-1", "99999999999999999999"])
def test_a_close_with_an_id_that_is_not_ascii_digits_is_a_json_404(operator_client, segment):
    open_position()
    response = operator_client.post(f"/positions/{segment}/close")
    assert response.status_code == 404 and response.json()["error"] == "position_not_found"


def test_arabic_indic_digits_never_name_a_position(operator_client):
    position = open_position()
    arabic = "".join(chr(0x0660 + int(digit)) for digit in str(position.pk))
    assert operator_client.post(f"/positions/{arabic}/close").status_code == 404
    position.refresh_from_db()
    assert position.status == "open"


@pytest.mark.parametrize(
    "path",
    [
        "/console/positions?until=9999-12-31",
        "/console/stats?until=9999-12-31",
        "/console/positions?since=9999-12-31&until=9999-12-31",
    ],
)
def test_a_console_date_at_the_end_of_the_calendar_is_a_form_error(client, operator, path):
    client.force_login(operator)
    response = client.get(path)
    assert response.status_code == 200
    assert response.context["form"].errors["until"]
    assert "Must be before 9999-12-31" in response.content.decode()  # shown on the page


@pytest.mark.parametrize("sort", ["--id", "---created_at", "-", "", "nope", "-pnl"])
def test_a_console_sort_that_is_not_a_column_never_fails(client, operator, sort):
    open_position()
    client.force_login(operator)
    response = client.get(f"/console/positions?sort={sort}")
    assert response.status_code == 200
    if sort in ("--id", "---created_at", "nope", "-"):
        assert response.context["form"].errors["sort"]
        assert "Sort: Select a valid choice" in response.content.decode()


@pytest.mark.parametrize(
    "stamp",
    [
        "9999-12-31T23:59:59-23:59",
        "9999-12-31T23:59:59-00:01",
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00+01:00",
    ],
)
def test_a_timestamp_past_the_representable_range_in_utc_is_a_recorded_400(anon_client, settings, stamp):
    body = json.loads(VALID + "}")
    response = post(anon_client, {**body, "timestamp": stamp})
    assert_recorded_400(response, settings, "timestamp")
