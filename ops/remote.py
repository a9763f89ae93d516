"""Talking to a running LOMS over HTTP, as an operator's terminal does: health and a test signal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import requests

HEALTHY, DEGRADED, UNREACHABLE = 0, 1, 2


def health_exit_code(report: dict | None) -> int:
    """0 when the report says ok, 1 degraded, 2 error (or no report at all)."""
    if not report:
        return UNREACHABLE
    return {"ok": HEALTHY, "degraded": DEGRADED}.get(report.get("status"), UNREACHABLE)


def health_fetch(base_url: str, *, timeout: float = 5.0, token: str = "") -> tuple[dict | None, str]:
    """GET <base_url>/health (with a token: the details too). Returns (report, "") or (None, why it
    failed). A 503 still carries a report."""
    url = base_url.rstrip("/") + "/health"
    try:
        response = requests.get(url, timeout=timeout, headers=_headers(token))
    except requests.RequestException as exc:
        return None, f"{url} unreachable: {type(exc).__name__}: {exc}"
    try:
        report = response.json()
    except ValueError:
        return None, f"{url} answered HTTP {response.status_code} without a JSON health report"
    if not isinstance(report, dict) or "status" not in report:
        return None, f"{url} answered HTTP {response.status_code} with something that is not a health report"
    return report, ""


@dataclass(frozen=True)
class TestSignalResult:
    http_status: int | None
    body: dict | None
    error: str = ""
    price: Decimal | None = None

    @property
    def opened(self) -> bool:
        return bool(self.body and self.body.get("risk_ok") and self.body.get("position_id"))


def _headers(token: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    return headers


def market_price_fetch(base_url: str, symbol: str, *, token: str, timeout: float = 5.0) -> Decimal:
    """The service's own current price for `symbol` (GET /market), in its configured price mode."""
    response = requests.get(
        base_url.rstrip("/") + "/market", params={"symbol": symbol}, headers=_headers(token), timeout=timeout
    )
    if response.status_code != 200:
        raise ValueError(f"GET /market answered HTTP {response.status_code}: {response.text[:300]}")
    quote = response.json()
    value = quote.get(quote.get("mode") or "last") or quote.get("last")
    if value is None:
        raise ValueError(f"GET /market gave no usable price: {quote}")
    return Decimal(str(value))


def signal_send_test(
    base_url: str,
    *,
    token: str,
    symbol: str,
    side: str,
    price: Decimal | None = None,
    strategy: str = "loms_test_signal",
    exchange: str = "",
    timeout: float = 10.0,
) -> TestSignalResult:
    """POST one bounce signal to <base_url>/signals/bounce exactly as the bot does, with a unique id."""
    try:
        if price is None:
            price = market_price_fetch(base_url, symbol, token=token, timeout=timeout)
    except (requests.RequestException, ValueError) as exc:
        return TestSignalResult(None, None, f"could not get a price for {symbol} (pass --price): {exc}")
    payload = {
        "symbol": symbol,
        "side": side,
        "price": float(price),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "strategy": strategy,
        "signal_id": f"test-{uuid.uuid4().hex[:16]}",
    }
    if exchange:
        payload["exchange"] = exchange
    url = base_url.rstrip("/") + "/signals/bounce"
    try:
        response = requests.post(url, json=payload, headers=_headers(token), timeout=timeout)
    except requests.RequestException as exc:
        return TestSignalResult(None, None, f"{url} unreachable: {type(exc).__name__}: {exc}", price)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        return TestSignalResult(
            response.status_code, body, f"HTTP {response.status_code}: {response.text[:500]}", price
        )
    return TestSignalResult(response.status_code, body, "", price)
