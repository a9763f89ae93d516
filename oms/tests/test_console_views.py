"""Console pages: who sees what, and the actions going through the same services as the API."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from oms.models import OmsControl, OmsSwitchChange, Position, PositionStatus, Signal, SignalOutcome, SwitchSource
from oms.tests.factories import closed_position, open_position

PAGES = [
    "/",
    "/console/positions",
    "/console/orders",
    "/console/signals",
    "/console/stats",
    "/console/switch",
    "/console/strategies",
    "/console/notifications",
]


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # the book figures are cached by a fingerprint that ids reused across tests could repeat


@pytest.fixture
def dummy_prices(settings):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "dummy"


@pytest.fixture
def operator_web(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def viewer_web(viewer) -> Client:
    client = Client()
    client.force_login(viewer)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_login(path):
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_a_viewer_can_read_every_page(viewer_web, path, dummy_prices):
    open_position()
    closed_position(pnl="2")
    assert viewer_web.get(path).status_code == 200


@pytest.mark.django_db
def test_a_logged_in_user_without_a_role_is_refused(django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_user("nobody", password="x"))
    assert client.get("/console/positions").status_code == 403


@pytest.mark.django_db
def test_the_overview_shows_environment_switch_and_headline_stats(operator_web, settings):
    closed_position(pnl="5", reason="tp", closed_at=timezone.now() - timedelta(hours=2))
    closed_position(pnl="-2", reason="sl", closed_at=timezone.now() - timedelta(hours=1))
    closed_position(pnl="1", reason="manual")
    open_position()
    page = operator_web.get("/").content.decode()
    assert "OMS ON" in page
    assert settings.PRICE_SOURCE in page and settings.PRICE_MODE in page
    assert '<div class="value" id="stat-open">1</div>' in page
    assert '<div class="value" id="stat-closed">3</div>' in page
    assert "+4.00" in page  # total PnL
    assert "1 / 1 / 1" in page  # TP / SL / other
    assert "<polyline" in page  # the equity curve
    assert "SECRET" not in page and settings.SECRET_KEY not in page


def test_the_overview_and_the_stats_page_show_the_current_epochs_equity_and_return(operator_web, settings):
    from decimal import Decimal

    from oms.services.epochs import epoch_start

    settings.STARTING_CAPITAL_USDT = Decimal("10000")
    closed_position(pnl="5", account_label="default")
    closed_position(pnl="-1", account_label="default")
    for path in ("/", "/console/stats"):
        page = operator_web.get(path).content.decode()
        assert '<div class="value" id="stat-equity">10004.00</div>' in page
        assert "+0.04%</span> on 10000 · default" in page
    epoch_start(name="small", capital=Decimal("500"), actor="test")  # a new epoch: its own capital, no trades
    closed_position(pnl="-50", account_label="small")
    page = operator_web.get("/").content.decode()
    assert '<div class="value" id="stat-equity">450.00</div>' in page
    assert "−10.00%</span> on 500 · small" in page


@pytest.mark.django_db
def test_the_overview_says_when_the_environment_forces_the_switch_off(viewer_web, settings):
    settings.OMS_ENABLED = False
    page = viewer_web.get("/").content.decode()
    assert "OMS OFF" in page and "OMS_ENABLED=false" in page


@pytest.mark.django_db
def test_the_live_fragment_is_only_the_live_part(viewer_web):
    response = viewer_web.get("/", HTTP_X_LIVE_FRAGMENT="overview")
    page = response.content.decode()
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    assert "Latest signals" in page and "<html" not in page


@pytest.mark.django_db
def test_positions_show_live_pnl_of_open_positions_with_one_quote_batch(operator_web, dummy_prices, monkeypatch):
    open_position(symbol="BTCUSDT", entry="90", qty="2")
    open_position(symbol="BTCUSDT", entry="95")
    open_position(symbol="ETHUSDT", entry="110", side="short", tp="100", sl="120")
    calls = []
    from pricing.sources.dummy import DummySource

    original = DummySource.get_quotes

    def counting(self, symbols):
        symbols = list(symbols)
        calls.append(symbols)
        return original(self, symbols)

    monkeypatch.setattr(DummySource, "get_quotes", counting)
    page = operator_web.get("/console/positions").content.decode()
    assert len(calls) == 1 and sorted(set(calls[0])) == ["BTCUSDT", "ETHUSDT"]
    assert "+20.0000" in page and "+5.0000" in page and "+10.0000" in page


@pytest.mark.django_db
def test_positions_filter_sort_and_page(viewer_web):
    for i in range(60):
        open_position(symbol="BTCUSDT" if i % 2 else "ETHUSDT", entry=str(100 + i))
    closed_position(pnl="3", symbol="SOLUSDT")
    page = viewer_web.get("/console/positions", {"status": "open", "symbol": "ethusdt", "sort": "entry_price"})
    rows = page.context["rows"]
    assert len(rows) == 30
    assert [p.entry_price for p, _ in rows][:2] == [Decimal("100"), Decimal("102")]
    assert all(p.symbol == "ETHUSDT" and p.status == "open" for p, _ in rows)
    second = viewer_web.get("/console/positions", {"page": 2})
    assert len(second.context["rows"]) == 11


@pytest.mark.django_db
def test_positions_date_range_includes_the_until_day(viewer_web):
    now = timezone.now()
    open_position(created_at=now - timedelta(days=3))
    inside = open_position(created_at=now)
    day = now.date().isoformat()
    rows = viewer_web.get("/console/positions", {"since": day, "until": day}).context["rows"]
    assert [p.pk for p, _ in rows] == [inside.pk]


@pytest.mark.django_db
def test_the_close_confirmation_shows_the_price_and_pnl_a_close_would_book(operator_web, dummy_prices):
    position = open_position(entry="90", qty="2")
    page = operator_web.get(f"/console/positions/{position.pk}/close").content.decode()
    assert 'id="confirm-close-price">100<' in page
    assert "+20.0000 USDT" in page
    assert Position.objects.get(pk=position.pk).status == PositionStatus.OPEN


@pytest.mark.django_db
def test_an_operator_closes_a_position_through_the_close_service(operator_web, dummy_prices):
    position = open_position(entry="90", qty="2")
    response = operator_web.post(f"/console/positions/{position.pk}/close", follow=True)
    position.refresh_from_db()
    assert (position.status, position.close_price, position.pnl, position.auto_close_reason) == (
        "closed",
        Decimal("100"),
        Decimal("20"),
        "manual",
    )
    assert f"Closed position #{position.pk} BTCUSDT long at 100, PnL +20.0000 USDT" in response.content.decode()


@pytest.mark.django_db
def test_closing_twice_reports_the_first_close(operator_web, dummy_prices):
    position = open_position(entry="90")
    operator_web.post(f"/console/positions/{position.pk}/close")
    response = operator_web.post(f"/console/positions/{position.pk}/close", follow=True)
    assert "already closed" in response.content.decode()


@pytest.mark.django_db
def test_closing_an_unknown_position_is_404(operator_web, dummy_prices):
    assert operator_web.post("/console/positions/999999/close").status_code == 404


@pytest.mark.django_db
def test_a_close_without_a_usable_price_keeps_the_position_open(operator_web, settings, monkeypatch):
    from pricing.quotes import QuoteError
    from pricing.sources.dummy import DummySource

    def broken(self, symbol):
        raise QuoteError(symbol, "exchange down")

    settings.PRICE_SOURCE, settings.PRICE_EXCHANGE = "exchange", "dummy"
    monkeypatch.setattr(DummySource, "get_quote", broken)
    position = open_position()
    response = operator_web.post(f"/console/positions/{position.pk}/close", follow=True)
    assert "was not closed" in response.content.decode()
    assert Position.objects.get(pk=position.pk).is_open


@pytest.mark.django_db
def test_close_all_needs_the_typed_phrase(operator_web, dummy_prices):
    open_position()
    response = operator_web.post("/console/positions/close-all", {"confirm": "close all"})
    assert response.status_code == 400
    assert Position.objects.filter(status=PositionStatus.OPEN).count() == 1


@pytest.mark.django_db
def test_close_all_closes_every_open_position_with_reason_panic(operator_web, dummy_prices):
    for symbol in ("BTCUSDT", "ETHUSDT", "BTCUSDT"):
        open_position(symbol=symbol, entry="99")
    response = operator_web.post("/console/positions/close-all", {"confirm": "CLOSE ALL"}, follow=True)
    assert "closed 3 position(s), PnL +3.0000 USDT" in response.content.decode()
    assert set(Position.objects.values_list("status", "auto_close_reason")) == {("closed", "panic")}


@pytest.mark.django_db
def test_an_operator_switches_the_oms_off_with_a_reason(operator_web, operator, signal_body):
    response = operator_web.post("/console/switch", {"enabled": "off", "reason": "bot misbehaving"}, follow=True)
    assert "OMS switched OFF" in response.content.decode()
    change = OmsSwitchChange.objects.get()
    assert (change.enabled, change.changed_by, change.user, change.source, change.reason) == (
        False,
        "olga",
        operator,
        SwitchSource.DASHBOARD,
        "bot misbehaving",
    )
    body = Client().post("/signals/bounce", signal_body(), content_type="application/json").json()
    assert body["oms_enabled"] is False
    assert Signal.objects.get().outcome == SignalOutcome.OMS_DISABLED


@pytest.mark.django_db
def test_the_switch_needs_a_reason(operator_web):
    response = operator_web.post("/console/switch", {"enabled": "off", "reason": "  "})
    assert response.status_code == 400
    assert "Give a reason" in response.content.decode()
    assert OmsControl.load().enabled is True


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path, data",
    [
        ("/console/switch", {"enabled": "off", "reason": "x"}),
        ("/console/positions/close-all", {"confirm": "CLOSE ALL"}),
        ("/console/positions/{pk}/close", {}),
    ],
)
def test_a_viewer_cannot_act(viewer_web, dummy_prices, path, data):
    position = open_position()
    response = viewer_web.post(path.format(pk=position.pk), data)
    assert response.status_code == 403
    assert Position.objects.get(pk=position.pk).is_open
    assert OmsControl.load().enabled is True


@pytest.mark.django_db
def test_a_viewer_sees_no_close_or_switch_controls(viewer_web, dummy_prices):
    position = open_position()
    positions_page = viewer_web.get("/console/positions").content.decode()
    overview = viewer_web.get("/").content.decode()
    switch_page = viewer_web.get("/console/switch").content.decode()
    assert f"/console/positions/{position.pk}/close" not in positions_page
    assert "Close all" not in positions_page
    assert "Turn OFF" not in overview and 'id="switch-form"' not in switch_page


@pytest.mark.django_db
def test_forms_refuse_a_post_without_csrf_token(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    position = open_position()
    assert client.post(f"/console/positions/{position.pk}/close").status_code == 403
    assert client.post("/console/switch", {"enabled": "off", "reason": "x"}).status_code == 403
    assert Position.objects.get(pk=position.pk).is_open and OmsControl.load().enabled


@pytest.mark.django_db
def test_signals_page_shows_outcome_reason_and_position_link(viewer_web, signal_body, settings):
    Client().post("/signals/bounce", signal_body(), content_type="application/json")
    settings.OMS_ENABLED = False
    Client().post("/signals/bounce", signal_body(symbol="ETHUSDT"), content_type="application/json")
    page = viewer_web.get("/console/signals").content.decode()
    position = Position.objects.get()
    assert f'href="/console/positions/{position.pk}"' in page
    assert 'data-outcome="oms_disabled"' in page and "OMS_ENABLED=false" in page
    only_opened = viewer_web.get("/console/signals", {"outcome": "opened"}).context["page"].object_list
    assert [s.outcome for s in only_opened] == ["opened"]


@pytest.mark.django_db
def test_statistics_page_has_breakdowns_by_symbol_strategy_exchange_and_day(viewer_web):
    closed_position(pnl="4", symbol="BTCUSDT", strategy="a")
    closed_position(pnl="-1", symbol="ETHUSDT", strategy="b", reason="sl")
    response = viewer_web.get("/console/stats")
    page = response.content.decode()
    for key in ("symbol", "strategy", "exchange", "day"):
        assert f'id="breakdown-{key}"' in page
    assert {g["symbol"]: g["total_pnl"] for g in response.context["breakdowns"][0]["groups"]} == {
        "BTCUSDT": Decimal("4"),
        "ETHUSDT": Decimal("-1"),
    }
    filtered = viewer_web.get("/console/stats", {"symbol": "btcusdt"}).context["stats"]
    assert filtered["closed_positions"] == 1


@pytest.mark.django_db
def test_orders_page_lists_entry_and_exit_orders(operator_web, dummy_prices, signal_body):
    Client().post("/signals/bounce", signal_body(), content_type="application/json")
    operator_web.post(f"/console/positions/{Position.objects.get().pk}/close")
    orders = operator_web.get("/console/orders").context["page"].object_list
    assert sorted(o.purpose for o in orders) == ["entry", "exit"]


@pytest.mark.django_db
def test_the_overview_figures_follow_the_book(viewer_web):
    closed_position(pnl="5")
    assert viewer_web.get("/").context["stats"]["closed_positions"] == 1
    closed_position(pnl="-1", reason="sl")
    page = viewer_web.get("/")
    assert page.context["stats"]["closed_positions"] == 2 and page.context["stats"]["total_pnl"] == Decimal("4")


def test_a_partially_closed_position_shows_what_is_open_what_closed_and_each_exit(operator_web, dummy_prices):
    from oms.services.closing import CloseInstruction, close_positions

    position = open_position(entry="100", qty="2")
    close_positions([CloseInstruction(position.pk, Decimal("110"), "signal", fraction=Decimal("0.5"))])
    page = operator_web.get(f"/console/positions/{position.pk}").content.decode()
    shown = dict(re.findall(r'<dd id="position-(qty|closed-qty|realized)"[^>]*>([^<]*)<', page))
    assert Decimal(shown["qty"]) == Decimal("1")
    assert [Decimal(v) for v in shown["closed-qty"].split(" of ")] == [Decimal("1"), Decimal("2")]
    assert Decimal(shown["realized"].split()[0].replace("+", "")) == Decimal("10")
    assert "<td>signal</td>" in page  # the exit order's reason
