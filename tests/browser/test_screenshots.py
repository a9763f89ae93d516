"""Screenshots of the overview and positions pages (desktop 1280 px, phone 390 px) for the README."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from oms.models import AutoCloseMonitor, Position, PositionStatus, Signal, SignalOutcome
from tests.browser.conftest import SCREENSHOT_DIR, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"]
SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def seed_book() -> None:
    """A believable paper book: two weeks of closed trades, a few open ones, recent signals."""
    rng = random.Random(7)
    now = timezone.now()
    for i in range(90):
        closed_at = now - timedelta(hours=(90 - i) * 3.5)
        symbol, side = rng.choice(SYMBOLS), rng.choice(["long", "short"])
        entry = Decimal(str(round(rng.uniform(90, 110), 2)))
        won = rng.random() < 0.45
        move = entry * Decimal("0.045" if won else "-0.015")
        reason = "tp" if won else "sl"
        if rng.random() < 0.1:
            reason, move = rng.choice(["manual", "timeout"]), entry * Decimal(str(round(rng.uniform(-0.01, 0.02), 4)))
        qty = Decimal("1")
        close = entry + move if side == "long" else entry - move
        Position.objects.create(
            exchange="bitget",
            symbol=symbol,
            side=side,
            qty=qty,
            entry_price=entry,
            strategy="bounce_ema10_strict",
            tp_price=entry * Decimal("1.045"),
            sl_price=entry * Decimal("0.985"),
            status=PositionStatus.CLOSED,
            created_at=closed_at - timedelta(minutes=rng.randint(5, 240)),
            closed_at=closed_at,
            close_price=close.quantize(Decimal("0.0001")),
            pnl=move.quantize(Decimal("0.0001")),
            auto_close_reason=reason,
            timeframe_min=5,
        )
    for i, symbol in enumerate(SYMBOLS):
        entry = Decimal(str(98 + i * 0.7)).quantize(Decimal("0.01"))
        side = "long" if i % 2 == 0 else "short"
        position = Position.objects.create(
            exchange="bitget",
            symbol=symbol,
            side=side,
            qty=Decimal("1"),
            entry_price=entry,
            strategy="bounce_ema10_strict",
            tp_price=entry * Decimal("1.045" if side == "long" else "0.955"),
            sl_price=entry * Decimal("0.985" if side == "long" else "1.015"),
            created_at=now - timedelta(minutes=9 * i + 3),
            timeframe_min=5,
        )
        Signal.objects.create(
            received_at=position.created_at,
            symbol=symbol,
            side=side,
            strategy=position.strategy,
            exchange="bitget",
            outcome=SignalOutcome.OPENED,
            position=position,
        )
    Signal.objects.create(
        received_at=now - timedelta(minutes=1),
        symbol="BTCUSDT",
        side="long",
        strategy="bounce_ema10_strict",
        exchange="bitget",
        outcome=SignalOutcome.RISK_BLOCKED,
        reason="max_symbol_open_reached (symbol=BTCUSDT, count=1, limit=1)",
    )
    monitor = AutoCloseMonitor.load()
    monitor.last_sweep_at, monitor.last_sweep_duration_ms = now, 4.2
    monitor.sweeps, monitor.positions_checked, monitor.positions_closed = 120_960, 604_211, 90
    monitor.save(
        update_fields=["last_sweep_at", "last_sweep_duration_ms", "sweeps", "positions_checked", "positions_closed"]
    )


def test_screenshots_of_overview_and_positions(chromium, live_server, operator, dummy_prices):
    seed_book()
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for size_name, viewport in SIZES.items():
        phone = size_name == "phone"
        context = chromium.new_context(
            viewport=viewport, device_scale_factor=2 if phone else 1, is_mobile=phone, has_touch=phone
        )
        page = context.new_page()
        log_in(page, live_server.url, operator)
        page.wait_for_selector("svg.chart polyline")
        page.screenshot(path=str(SCREENSHOT_DIR / f"overview-{size_name}.png"), full_page=True)
        page.goto(f"{live_server.url}/console/positions")
        page.wait_for_selector("#positions-table")
        page.screenshot(path=str(SCREENSHOT_DIR / f"positions-{size_name}.png"), full_page=not phone)
        context.close()
    for name in ("overview-desktop", "overview-phone", "positions-desktop", "positions-phone"):
        assert (SCREENSHOT_DIR / f"{name}.png").stat().st_size > 10_000
