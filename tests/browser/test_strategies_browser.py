"""The strategies page in a real browser (issue #12 §5): switch one strategy off, the bot's next signal
of that strategy is refused while another strategy still trades; set its limits."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from oms.models import OperatorAction, OperatorActionKind, OperatorSource, Position, StrategyControl
from tests.browser.conftest import log_in
from tests.browser.test_console_browser import send_signal

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BOUNCE = "bounce_ema10_strict"


def test_switching_a_strategy_off_in_the_browser_refuses_only_its_signals(
    page, live_server, operator, bot_token, dummy_prices
):
    send_signal(live_server.url, bot_token, strategy=BOUNCE)
    log_in(page, live_server.url, operator)
    page.get_by_role("link", name="Strategies", exact=True).click()
    row = page.locator(f'tr[data-strategy="{BOUNCE}"]')
    expect(row.locator(".strategy-state")).to_have_text("ON")

    row.get_by_role("button", name="Turn OFF").click()  # no reason: the browser lets it through, the server refuses
    expect(page.locator(".msg-error")).to_contain_text("Give a reason")
    assert not StrategyControl.objects.exists()

    row = page.locator(f'tr[data-strategy="{BOUNCE}"]')
    row.get_by_label(f"Reason for {BOUNCE}").fill("three stop-losses in a row")
    row.get_by_role("button", name="Turn OFF").click()
    expect(page.locator(".msg-success")).to_contain_text(f"Strategy {BOUNCE} is OFF")
    row = page.locator(f'tr[data-strategy="{BOUNCE}"]')
    expect(row.locator(".strategy-state")).to_have_text("OFF")
    expect(row).to_contain_text("three stop-losses in a row")
    expect(page.locator("#strategy-changes")).to_contain_text("enabled: on → off")

    refused = send_signal(live_server.url, bot_token, strategy=BOUNCE)
    assert refused == {
        "received": True,
        "oms_enabled": True,
        "risk_ok": False,
        "risk_reason": f"strategy_switched_off (strategy={BOUNCE})",
    }
    assert send_signal(live_server.url, bot_token, strategy="breakout_v2")["risk_ok"] is True
    assert sorted(Position.objects.values_list("strategy", flat=True)) == [BOUNCE, "breakout_v2"]
    action = OperatorAction.objects.get()
    assert (action.action, action.source, action.actor) == (
        OperatorActionKind.STRATEGY,
        OperatorSource.CONSOLE,
        operator.username,
    )

    row = page.locator(f'tr[data-strategy="{BOUNCE}"]')
    row.get_by_label(f"Reason for {BOUNCE}").fill("reviewed, back on")
    row.get_by_role("button", name="Turn ON").click()
    expect(page.locator(f'tr[data-strategy="{BOUNCE}"] .strategy-state')).to_have_text("ON")
    assert send_signal(live_server.url, bot_token, strategy=BOUNCE)["risk_ok"] is True


def test_setting_a_strategys_limits_in_the_browser(page, live_server, operator, bot_token, dummy_prices):
    send_signal(live_server.url, bot_token, strategy=BOUNCE)
    log_in(page, live_server.url, operator)
    page.goto(f"{live_server.url}/console/strategies")
    page.locator(f'tr[data-strategy="{BOUNCE}"]').get_by_role("link", name="Limits").click()
    expect(page.locator("#strategy-set h2")).to_have_text(f"Change {BOUNCE}")
    expect(page.locator("#id_strategy")).to_have_value(BOUNCE)
    page.fill("#id_max_open_positions", "1")
    page.fill("#id_max_exposure_usdt", "500")
    page.fill("#id_reason", "one at a time while on trial")
    page.click("#strategy-set-submit")
    expect(page.locator(".msg-success")).to_contain_text(f"Strategy {BOUNCE} is ON")
    row = page.locator(f'tr[data-strategy="{BOUNCE}"]')
    expect(row).to_contain_text("500.00")

    refused = send_signal(live_server.url, bot_token, strategy=BOUNCE)
    assert refused["risk_reason"] == f"strategy_max_open_reached (strategy={BOUNCE}, count=1, limit=1)"
    control = StrategyControl.objects.get()
    assert (control.enabled, control.max_open_positions, control.max_exposure_usdt) == (True, 1, Decimal("500"))


def test_a_viewer_sees_the_strategies_without_controls(page, live_server, viewer, bot_token, dummy_prices):
    send_signal(live_server.url, bot_token, strategy=BOUNCE)
    log_in(page, live_server.url, viewer)
    page.goto(f"{live_server.url}/console/strategies")
    expect(page.locator(f'tr[data-strategy="{BOUNCE}"]')).to_be_visible()
    expect(page.get_by_role("button", name="Turn OFF")).to_have_count(0)
    expect(page.locator("#strategy-set-form")).to_have_count(0)
