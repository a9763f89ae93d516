"""The console in a real browser: log in, watch, close, close all, switch off; roles and CSRF."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
import requests
from playwright.sync_api import expect

from oms.models import OmsControl, OmsSwitchChange, Position, PositionStatus, Signal, SignalOutcome, SwitchSource
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

_stamps = iter(range(10**6))


def send_signal(base_url: str, token: str, **overrides) -> dict:
    """The bot's call, over real HTTP to the live server."""
    n = next(_stamps)
    body = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "price": 98.0,
        "timestamp": f"2025-06-19T{n // 60 % 24:02d}:{n % 60:02d}:00Z",
        "exchange": "bitget",
        "timeframe_min": 5,
        "strategy": "bounce_ema10_strict",
        "tp_pct": 4.5,
        "sl_pct": 1.5,
    }
    body.update(overrides)
    response = requests.post(
        f"{base_url}/signals/bounce", json=body, headers={"Authorization": f"Token {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_an_operator_sees_a_signal_position_and_closes_it_with_its_pnl(
    page, live_server, operator, bot_token, dummy_prices, settings
):
    opened = send_signal(live_server.url, bot_token, price=98.0)
    position_id = opened["position_id"]
    log_in(page, live_server.url, operator)

    expect(page.locator("#stat-open")).to_have_text("1")
    expect(page.get_by_role("link", name=f"#{position_id}")).to_be_visible()  # latest signals link to it
    page.get_by_role("link", name="Positions", exact=True).click()
    row = page.locator(f"#position-{position_id}")
    expect(row).to_contain_text("BTCUSDT")
    expect(row).to_contain_text("open")
    expect(row).to_contain_text("+2.0000")  # live PnL at the dummy quote of 100

    row.get_by_role("link", name="Close").click()
    expect(page.locator("#confirm-close-price")).to_have_text("100")
    expect(page.locator("#confirm-pnl")).to_contain_text("+2.0000 USDT")
    page.click("#confirm-close")

    expect(page.locator(".msg-success")).to_contain_text(
        f"Closed position #{position_id} BTCUSDT long at 100, PnL +2.0000 USDT (manual)"
    )
    row = page.locator(f"#position-{position_id}")
    expect(row).to_contain_text("closed")
    expect(row).to_contain_text("manual")
    expect(row).to_contain_text("+2.0000")
    position = Position.objects.get(pk=position_id)
    assert (position.status, position.pnl, position.auto_close_reason) == ("closed", Decimal("2"), "manual")
    page.goto(f"{live_server.url}/")
    expect(page.locator("#stat-equity")).to_have_text(f"{settings.STARTING_CAPITAL_USDT + 2:.2f}")  # capital + PnL


def test_switching_off_in_the_browser_refuses_the_next_signal(page, live_server, operator, bot_token, dummy_prices):
    log_in(page, live_server.url, operator)
    page.get_by_role("link", name="Switch", exact=True).click()
    page.fill("#id_reason", "   ")  # blank: the browser lets it through, the server refuses it
    page.click("#switch-off")
    expect(page.locator(".errorlist")).to_contain_text("Give a reason")
    assert OmsControl.load().enabled is True

    page.fill("#id_reason", "bot is misbehaving")
    page.click("#switch-off")
    expect(page.locator(".msg-success")).to_contain_text("OMS switched OFF")
    expect(page.locator("#switch-state")).to_have_text("OMS OFF")
    expect(page.locator("#switch-history")).to_contain_text("bot is misbehaving")

    body = send_signal(live_server.url, bot_token)
    assert body["oms_enabled"] is False and body["risk_ok"] is False
    assert "bot is misbehaving" in body["reason"]
    assert not Position.objects.exists()
    change = OmsSwitchChange.objects.get()
    assert (change.changed_by, change.source, change.enabled) == (operator.username, SwitchSource.DASHBOARD, False)

    page.get_by_role("link", name="Signals", exact=True).click()
    expect(page.locator("[data-outcome=oms_disabled]")).to_have_count(1)
    assert Signal.objects.get().outcome == SignalOutcome.OMS_DISABLED


def test_close_all_closes_every_open_position_after_the_typed_confirmation(
    page, live_server, operator, bot_token, dummy_prices
):
    for symbol, price in (("BTCUSDT", 98.0), ("ETHUSDT", 99.0), ("SOLUSDT", 101.0)):
        send_signal(live_server.url, bot_token, symbol=symbol, price=price)
    log_in(page, live_server.url, operator)
    page.goto(f"{live_server.url}/console/positions")
    page.click("#close-all-link")
    expect(page.locator("#close-all-count")).to_have_text("3")

    page.fill("#id_confirm", "close all")  # the wrong phrase closes nothing
    page.click("#close-all-submit")
    expect(page.locator(".errorlist")).to_contain_text('Type exactly "CLOSE ALL"')
    assert Position.objects.filter(status=PositionStatus.OPEN).count() == 3

    page.fill("#id_confirm", "CLOSE ALL")
    page.click("#close-all-submit")
    expect(page.locator(".msg-success")).to_contain_text("closed 3 position(s), PnL +2.0000 USDT")
    expect(page.locator("#positions-table")).to_contain_text("No positions match.")  # the open filter is empty
    assert set(Position.objects.values_list("status", "auto_close_reason")) == {("closed", "panic")}


def test_a_viewer_sees_no_controls_and_is_refused_on_post(page, live_server, viewer, bot_token, dummy_prices):
    position_id = send_signal(live_server.url, bot_token)["position_id"]
    log_in(page, live_server.url, viewer)
    expect(page.locator("#switch-control")).to_have_count(0)

    page.goto(f"{live_server.url}/console/positions")
    expect(page.locator(f"#position-{position_id}")).to_contain_text("open")
    expect(page.locator(f"#position-{position_id}").get_by_role("link", name="Close")).to_have_count(0)
    expect(page.locator("#close-all-link")).to_have_count(0)
    page.goto(f"{live_server.url}/console/switch")
    expect(page.locator("#switch-form")).to_have_count(0)

    # Even with a valid CSRF token, the server refuses a viewer's write.
    statuses = page.evaluate(
        """async (positionId) => {
        const token = document.querySelector('input[name=csrfmiddlewaretoken]').value;
        const post = (url, body) => fetch(url, {method: 'POST', headers: {'X-CSRFToken': token,
            'Content-Type': 'application/x-www-form-urlencoded'}, body, redirect: 'manual'}).then(r => r.status);
        return [await post('/console/switch', 'enabled=off&reason=x'),
                await post(`/console/positions/${positionId}/close`, ''),
                await post('/console/positions/close-all', 'confirm=CLOSE+ALL')];
    }""",
        position_id,
    )
    assert statuses == [403, 403, 403]
    assert Position.objects.get(pk=position_id).status == PositionStatus.OPEN
    assert OmsControl.load().enabled is True


def test_forms_are_protected_against_cross_site_posts(page, live_server, operator, bot_token, dummy_prices):
    position_id = send_signal(live_server.url, bot_token)["position_id"]
    log_in(page, live_server.url, operator)
    statuses = page.evaluate(
        """async (positionId) => {
        const post = (headers) => fetch(`/console/positions/${positionId}/close`, {method: 'POST', headers,
            redirect: 'manual'}).then(r => r.status);
        const token = document.querySelector('input[name=csrfmiddlewaretoken]').value;
        return [await post({}), await post({'X-CSRFToken': 'forged-token-forged-token-forged-12'}),
                await post({'X-CSRFToken': token})];
    }""",
        position_id,
    )
    assert statuses[:2] == [403, 403]
    assert statuses[2] in (0, 302)  # the genuine form post closes and redirects (opaque redirect: 0)
    assert Position.objects.get(pk=position_id).status == PositionStatus.CLOSED


def test_live_parts_refresh_without_a_full_reload(page, live_server, operator, bot_token, dummy_prices):
    log_in(page, live_server.url, operator)
    page.goto(f"{live_server.url}/console/positions")
    expect(page.locator("#positions-table")).to_contain_text("No positions match.")
    page.evaluate("window.__notReloaded = true")

    position_id = send_signal(live_server.url, bot_token, symbol="XRPUSDT")["position_id"]

    expect(page.locator(f"#position-{position_id}")).to_contain_text("XRPUSDT", timeout=12_000)
    assert page.evaluate("window.__notReloaded") is True
    expect(page.locator("#live-status")).to_have_text(re.compile(r"Updated \d"))


def test_a_partial_exit_shows_on_the_position_and_the_close_books_the_whole_trade(
    page, live_server, operator, bot_token, dummy_prices
):
    from oms.services.positions import position_close_at_market

    position_id = send_signal(live_server.url, bot_token, price=98.0, qty=2)["position_id"]
    position_close_at_market(position_id=position_id, reason="signal", fraction=Decimal("0.5"))  # at 100
    log_in(page, live_server.url, operator)
    page.goto(f"{live_server.url}/console/positions/{position_id}")
    expect(page.locator("#position-qty")).to_have_text(re.compile(r"^1(\.0+)?$"))
    expect(page.locator("#position-closed-qty")).to_have_text(re.compile(r"^1(\.0+)? of 2(\.0+)?$"))
    expect(page.locator("#position-realized")).to_contain_text("+2.0000 USDT")
    expect(page.get_by_role("cell", name="signal", exact=True)).to_be_visible()  # the exit order's reason

    page.goto(f"{live_server.url}/console/positions/{position_id}/close")
    expect(page.locator("#confirm-pnl")).to_contain_text("+4.0000 USDT")  # both halves, +2 each
    page.click("#confirm-close")
    expect(page.locator(".msg-success")).to_contain_text("PnL +4.0000 USDT")
    position = Position.objects.get(pk=position_id)
    assert (position.status, position.pnl, position.closed_qty, position.qty) == (
        "closed",
        Decimal("4"),
        Decimal("1"),
        Decimal("1"),
    )


def test_an_operator_moves_a_stop_the_bot_moves_it_to_break_even_then_exits_in_two_steps(
    page, live_server, operator, bot_token, dummy_prices
):
    position_id = send_signal(live_server.url, bot_token, price=98.0)["position_id"]  # stop 96.53
    log_in(page, live_server.url, operator)
    page.goto(f"{live_server.url}/console/positions/{position_id}")
    page.fill("#id_sl_price", "95")
    page.click("#stop-submit")
    expect(page.locator(".msg-error")).to_contain_text("would loosen the stop")
    page.fill("#id_sl_price", "97.5")
    page.fill("#id_reason", "higher low at 97.6")
    page.click("#stop-submit")
    expect(page.locator(".msg-success")).to_contain_text(f"Stop of position #{position_id} moved from 96.53 to 97.5")
    assert Position.objects.get(pk=position_id).sl_price == Decimal("97.5")

    answer = requests.post(
        f"{live_server.url}/signals/stop",
        json={"position_id": position_id, "sl_price": "break_even", "timestamp": "2025-06-19T12:00:00Z"},
        headers={"Authorization": f"Token {bot_token}"},
        timeout=10,
    ).json()
    assert (answer["outcome"], answer["sl_price"], answer["previous_sl_price"]) == ("stop_moved", 98.0, 97.5)
    page.reload()
    expect(page.locator("#stop-form")).to_be_visible()
    assert Position.objects.get(pk=position_id).sl_price == Decimal("98")

    for fraction, outcome in ((0.5, "partially_closed"), (None, "closed")):
        answer = requests.post(
            f"{live_server.url}/signals/exit",
            json={"position_id": position_id, "fraction": fraction, "timestamp": "2025-06-19T12:05:00Z"},
            headers={"Authorization": f"Token {bot_token}"},
            timeout=10,
        ).json()
        assert answer["outcome"] == outcome
    page.reload()
    expect(page.locator(".badge-signal")).to_have_text("Exit signal")
    expect(page.locator("#stop-form")).to_have_count(0)
