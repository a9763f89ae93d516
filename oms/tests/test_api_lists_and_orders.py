"""GET /positions, /orders, /signals, /market, /health, /oms/switch and POST /orders."""

from datetime import UTC, datetime, timedelta

import pytest

from oms.models import OmsSwitchChange, Position
from oms.tests.factories import closed_position, open_position

pytestmark = pytest.mark.django_db


def test_positions_are_newest_first_and_paginated(anon_client):
    for i in range(5):
        open_position(symbol=f"S{i}USDT")
    body = anon_client.get("/positions?page_size=2").json()
    assert body["count"] == 5 and len(body["results"]) == 2
    assert [p["symbol"] for p in body["results"]] == ["S4USDT", "S3USDT"]
    assert anon_client.get("/positions/?page=3&page_size=2").json()["results"][0]["symbol"] == "S0USDT"


def test_position_rows_carry_every_field_as_json_numbers(anon_client):
    open_position(entry="104812.4", qty="0.01")
    row = anon_client.get("/positions").json()["results"][0]
    for field in (
        "exchange",
        "market_type",
        "symbol",
        "side",
        "qty",
        "account_label",
        "external_order_id",
        "external_position_ref",
        "entry_price",
        "tp_price",
        "sl_price",
        "status",
        "created_at",
        "closed_at",
        "close_price",
        "pnl",
        "fee",
        "auto_close_reason",
        "exit_strategy",
        "dynamic_tp_price",
        "dynamic_sl_price",
        "max_favorable_move",
        "exit_meta",
    ):
        assert field in row
    assert row["entry_price"] == 104812.4 and row["qty"] == 0.01


def test_position_filters(anon_client):
    t0 = datetime(2025, 6, 1, tzinfo=UTC)
    open_position(symbol="BTCUSDT", side="long", strategy="a", created_at=t0)
    open_position(symbol="ETHUSDT", side="short", strategy="b", tp="90", sl="110", created_at=t0 + timedelta(days=1))
    closed_position(pnl="1", symbol="BTCUSDT", closed_at=t0 + timedelta(days=2))

    def ids(query: str) -> int:
        return anon_client.get(f"/positions?{query}").json()["count"]

    assert ids("status=open") == 2
    assert ids("symbol=btcusdt") == 2
    assert ids("side=short") == 1
    assert ids("strategy=a") == 1
    assert ids("exchange=bitget") == 3
    assert ids(f"since={(t0 + timedelta(hours=12)).isoformat().replace('+00:00', 'Z')}") == 2
    assert ids("until=2025-06-01T12:00:00Z") == 1
    assert anon_client.get("/positions?status=maybe").status_code == 400


def test_post_orders_creates_an_order_and_its_open_position(anon_client):
    response = anon_client.post(
        "/orders",
        data={"symbol": "solusdt", "side": "BUY", "qty": 2, "entry_price": 150, "tp_price": 160, "sl_price": 145},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    position = Position.objects.get(pk=body["position_id"])
    assert (position.symbol, position.side, float(position.tp_price)) == ("SOLUSDT", "long", 160.0)
    assert body["purpose"] == "entry" and body["status"] == "filled" and body["qty"] == 2.0
    assert anon_client.get("/orders/").json()["results"][0]["id"] == body["id"]


def test_post_orders_goes_through_the_risk_checks(anon_client, settings):
    settings.MAX_OPEN_POSITIONS = 0
    response = anon_client.post(
        "/orders", data={"symbol": "BTCUSDT", "side": "long", "qty": 1, "entry_price": 100}, format="json"
    )
    assert response.status_code == 409 and "max_total_open_reached" in response.json()["detail"]
    assert Position.objects.count() == 0


@pytest.mark.parametrize(
    "body,field",
    [
        ({"tp_price": 90}, "tp_price"),
        ({"sl_price": 110}, "sl_price"),
        ({"qty": -1}, "qty"),
        ({"side": "up"}, "side"),
    ],
)
def test_post_orders_validates_levels_and_fields(anon_client, body, field):
    payload = {"symbol": "BTCUSDT", "side": "long", "qty": 1, "entry_price": 100, **body}
    response = anon_client.post("/orders", data=payload, format="json")
    assert response.status_code == 400 and field in response.json()["errors"]


def test_signals_list_shows_outcome_and_reason(anon_client, signal_body, settings):
    settings.MAX_OPEN_POSITIONS = 0
    anon_client.post("/signals/bounce", data=signal_body(), format="json")
    row = anon_client.get("/signals?outcome=risk_blocked").json()["results"][0]
    assert row["reason"].startswith("max_total_open_reached")


def test_market_returns_the_current_quote(anon_client, settings):
    settings.PRICE_SOURCE, settings.PRICE_EXCHANGE = "exchange", "dummy"
    body = anon_client.get("/market?symbol=btcusdt").json()
    assert body["symbol"] == "BTCUSDT" and body["last"] == 100.0 and body["bid"] == 99.95


def test_market_needs_a_symbol(anon_client):
    assert anon_client.get("/market").status_code == 400


def test_health_reports_configuration_without_secrets(operator_client, settings):
    settings.DATABASE_URL = "postgres://loms:s3cr3t-pw@db.example:5432/loms"
    body = operator_client.get("/health/").json()
    assert body["service"] == "loms" and body["ok"] is (body["status"] == "ok")
    assert body["database_url"] == "postgres://loms:***@db.example:5432/loms"
    for key in (
        "environment",
        "broker_mode",
        "oms_enabled",
        "audit_log_path",
        "price_source",
        "price_mode",
        "price_exchange",
        "auto_close",
    ):
        assert key in body
    assert "s3cr3t-pw" not in str(body) and settings.SECRET_KEY not in str(body)


def test_health_is_degraded_until_a_sweep_has_run(anon_client):
    body = anon_client.get("/health").json()
    assert body["status"] == "degraded" and [r["code"] for r in body["reasons"]] == ["loop_stale"]


def test_switch_api_records_who_when_and_why(anon_client):
    response = anon_client.post("/oms/switch", data={"enabled": False, "reason": "CPI release"}, format="json")
    assert response.json()["oms_enabled"] is False
    change = OmsSwitchChange.objects.get()
    assert (change.enabled, change.reason, change.source) == (False, "CPI release", "api")
    assert anon_client.get("/oms/switch").json()["reason"] == "CPI release"


def test_switch_needs_a_reason(anon_client):
    assert anon_client.post("/oms/switch", data={"enabled": False, "reason": ""}, format="json").status_code == 400


def test_openapi_schema_and_docs_are_served_offline(anon_client):
    schema = anon_client.get("/api/schema?format=json")
    assert schema.status_code == 200 and "/signals/bounce" in schema.content.decode()
    docs = anon_client.get("/docs").content.decode()
    assert "swagger-ui" in docs and "cdn" not in docs.lower()
