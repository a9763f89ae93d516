"""Issue #12 §7: a stuck position (its symbol has no usable price) is closed at an operator's price
(reason manual_price) or voided (cancelled, no PnL, not a trade), through the one close path,
audited, and counted apart in the statistics by both the maintained figures and the SQL path."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from oms.models import CloseReason, OperatorAction, Order, OrderPurpose, Position, PositionStatus
from oms.selectors import book_stats
from oms.services.closing import CloseInstruction, close_positions
from oms.services.operator_audit import Operator
from oms.services.settle import SettleInvalid, position_settle
from oms.tests.factories import open_position
from pricing.quotes import QuoteError
from pricing.sources.dummy import DummySource
from tests.support import run_together

DELISTED = "GONEUSDT"


@pytest.fixture
def prices(settings, monkeypatch):
    """Dummy quotes at 100 for every symbol but DELISTED, which has none."""
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "dummy"
    real = DummySource.get_quote

    def quote(self, symbol):
        if symbol == DELISTED:
            raise QuoteError(symbol, "symbol not found (delisted)")
        return real(self, symbol)

    monkeypatch.setattr(DummySource, "get_quote", quote)


def settle(client, position, body):
    return client.post(f"/positions/{position.pk}/settle", body, format="json")


# --- API ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_stuck_position_closes_at_the_operators_price_with_its_pnl(operator_client, prices, settings):
    settings.PAPER_FEE_RATE = Decimal("0.001")
    settings.PAPER_SLIPPAGE_BPS = Decimal("50")  # the operator's price is taken as is
    position = open_position(symbol=DELISTED, entry="90", qty="2", fee="0.18")
    response = settle(operator_client, position, {"price": 95, "reason": "delisted at 95"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["auto_close_reason"], body["close_price"], body["closed_now"]) == (
        "closed",
        "manual_price",
        95.0,
        True,
    )
    position.refresh_from_db()
    assert position.fee == Decimal("0.18") + Decimal("0.19")
    assert position.pnl == Decimal("10") - Decimal("0.37")
    exit_order = Order.objects.get(position=position, purpose=OrderPurpose.EXIT)
    assert exit_order.price == Decimal("95")
    [row] = OperatorAction.objects.all()
    assert (row.action, row.actor, row.source, row.position_id, row.reason) == (
        "settle_price",
        "olga",
        "api",
        position.pk,
        "delisted at 95",
    )
    assert row.details["close_price"] == "95.0000000000" and row.details["via"] == "settle"


@pytest.mark.django_db
def test_a_voided_position_is_cancelled_with_no_pnl_and_no_exit_order(operator_client, prices):
    position = open_position(symbol=DELISTED)
    response = settle(operator_client, position, {"void": True, "price": None, "reason": "exchange gone"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["auto_close_reason"], body["close_price"], body["pnl"], body["closed_now"]) == (
        "cancelled",
        "void",
        None,
        None,
        True,
    )
    position.refresh_from_db()
    assert position.closed_at is not None and not Position.objects.open().exists()
    assert not Order.objects.filter(position=position, purpose=OrderPurpose.EXIT).exists()
    [row] = OperatorAction.objects.all()
    assert (row.action, row.reason, row.position_id) == ("void", "exchange gone", position.pk)


@pytest.mark.django_db
def test_voided_and_operator_priced_closes_are_counted_apart_by_both_stats_paths(operator_client, prices):
    winner, stuck_win, stuck_void, still_open = (
        open_position(),
        open_position(symbol=DELISTED, entry="90"),
        open_position(symbol=DELISTED),
        open_position(),
    )
    close_positions([CloseInstruction(winner.pk, Decimal("104.5"), CloseReason.TP)])
    assert settle(operator_client, stuck_win, {"price": 99, "reason": "r"}).status_code == 200
    assert settle(operator_client, stuck_void, {"void": True, "reason": "r"}).status_code == 200
    since = {"since": timezone.now() - timedelta(days=1)}  # not servable by the figures: the SQL path
    for stats in (book_stats({}), book_stats(since)):
        assert (stats["total_positions"], stats["open_positions"], stats["closed_positions"]) == (4, 1, 2)
        assert (stats["manual_price_count"], stats["voided_count"], stats["tp_count"]) == (1, 1, 1)
        assert Decimal(str(stats["total_pnl"])) == Decimal("13.5")  # the void adds no PnL and no trade
        assert stats["winrate"] == 100.0
    for group_by in ("symbol", "day"):
        assert book_stats({}, group_by) == book_stats(since, group_by)
    [gone] = [g for g in book_stats({}, "symbol") if g["symbol"] == DELISTED]
    assert (gone["total_positions"], gone["closed_positions"], gone["voided_count"]) == (2, 1, 1)
    assert still_open.status == PositionStatus.OPEN


@pytest.mark.django_db
def test_a_symbol_with_a_usable_price_is_refused_use_the_normal_close(operator_client, prices):
    position = open_position(symbol="BTCUSDT")
    response = settle(operator_client, position, {"price": 95, "reason": "r"})
    assert response.status_code == 409 and response.json()["error"] == "price_available"
    assert "normal close" in response.json()["detail"]
    assert Position.objects.get().status == "open" and not OperatorAction.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["demo", "live"])
def test_an_exchange_position_is_refused_the_exchange_is_the_truth(operator_client, prices, mode):
    position = open_position(symbol=DELISTED, broker_mode=mode)
    response = settle(operator_client, position, {"void": True, "reason": "r"})
    assert response.status_code == 409 and response.json()["error"] == "exchange_position"
    assert Position.objects.get().status == "open" and not OperatorAction.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body,field",
    [
        ({"price": 95, "void": True, "reason": "r"}, "price"),
        ({"reason": "r"}, "price"),
        ({"void": False, "price": None, "reason": "r"}, "price"),
        ({"void": "yes", "reason": "r"}, "void"),
        ({"void": 1, "reason": "r"}, "void"),
        ({"price": 95}, "reason"),
        ({"price": 95, "reason": ""}, "reason"),
        ({"price": -1, "reason": "r"}, "price"),
        ({"price": "95", "reason": "r"}, "price"),
        ({"price": 95.00000000001, "reason": "r"}, "price"),
    ],
)
def test_a_bad_settle_body_is_a_400_naming_the_field(operator_client, prices, body, field):
    position = open_position(symbol=DELISTED)
    response = settle(operator_client, position, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert Position.objects.get().status == "open" and not OperatorAction.objects.exists()


@pytest.mark.django_db
def test_settle_needs_the_close_permission_and_a_known_position(
    viewer_client, bot_client, operator_client, prices, strict_api
):
    position = open_position(symbol=DELISTED)
    assert settle(viewer_client, position, {"void": True, "reason": "r"}).status_code == 403
    assert (
        bot_client.post(f"/positions/{position.pk}/settle", {"void": True, "reason": "r"}, format="json").status_code
        == 403
    )
    assert (
        operator_client.post("/positions/999999/settle", {"void": True, "reason": "r"}, format="json").status_code
        == 404
    )
    assert (
        operator_client.post("/positions/abc/settle", {"void": True, "reason": "r"}, format="json").status_code == 404
    )
    assert Position.objects.get().status == "open"


@pytest.mark.django_db
def test_an_already_closed_position_is_returned_as_is_and_nothing_is_recorded(operator_client, prices):
    position = open_position(symbol=DELISTED)
    close_positions([CloseInstruction(position.pk, Decimal("98.5"), CloseReason.SL)])
    response = settle(operator_client, position, {"void": True, "reason": "r"})
    assert response.status_code == 200
    assert (response.json()["closed_now"], response.json()["status"], response.json()["auto_close_reason"]) == (
        False,
        "closed",
        "sl",
    )
    assert not OperatorAction.objects.exists()


@pytest.mark.django_db
def test_the_service_refuses_an_unaudited_or_ambiguous_settle(prices):
    position = open_position(symbol=DELISTED)
    with pytest.raises(SettleInvalid):
        position_settle(position_id=position.pk, price=None, void=True, operator=Operator("olga", "api"))
    with pytest.raises(SettleInvalid):
        position_settle(
            position_id=position.pk, price=Decimal("1"), void=True, operator=Operator("olga", "api", reason="r")
        )


@pytest.mark.django_db(transaction=True)
def test_a_settle_racing_the_sweep_and_other_settles_closes_once(prices):
    position = open_position(symbol=DELISTED, entry="100")
    operator = Operator("olga", "api", reason="race")

    def by_settle(void: bool) -> bool:
        return position_settle(
            position_id=position.pk, price=None if void else Decimal("97"), void=void, operator=operator
        ).closed_now

    def by_sweep() -> bool:  # the sweep books through the same close path
        return bool(close_positions([CloseInstruction(position.pk, Decimal("104.5"), CloseReason.TP)]).closed)

    outcomes = run_together(
        [lambda: by_settle(False), lambda: by_settle(True), by_sweep, lambda: by_settle(False), by_sweep]
    )
    assert outcomes.count(True) == 1
    position.refresh_from_db()
    assert position.status != PositionStatus.OPEN
    audited = OperatorAction.objects.count()
    assert audited == (1 if position.auto_close_reason in ("manual_price", "void") else 0)
    exits = Order.objects.filter(position=position, purpose=OrderPurpose.EXIT).count()
    assert exits == (0 if position.status == PositionStatus.CANCELLED else 1)
    stats = book_stats({})
    assert stats["closed_positions"] + stats["voided_count"] == 1 and stats["open_positions"] == 0


# --- console --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_console_offers_settle_only_to_operators_on_a_stuck_paper_position(client, operator, viewer, prices):
    stuck, priced = open_position(symbol=DELISTED), open_position()
    client.force_login(operator)
    assert 'id="settle-form"' in client.get(f"/console/positions/{stuck.pk}").content.decode()
    assert 'id="settle-form"' not in client.get(f"/console/positions/{priced.pk}").content.decode()
    client.force_login(viewer)
    assert 'id="settle-form"' not in client.get(f"/console/positions/{stuck.pk}").content.decode()
    assert client.post(f"/console/positions/{stuck.pk}/settle", {"void": "on", "reason": "r"}).status_code == 403
    assert Position.objects.get(pk=stuck.pk).status == "open"


@pytest.mark.django_db
def test_the_console_settles_at_a_price_and_voids_and_shows_who(client, operator, prices):
    priced, voided = open_position(symbol=DELISTED, entry="90"), open_position(symbol=DELISTED)
    client.force_login(operator)
    response = client.post(
        f"/console/positions/{priced.pk}/settle", {"price": "95", "reason": "last trade 95"}, follow=True
    )
    page = response.content.decode()
    assert "Closed position" in page and "olga from console: last trade 95" in page
    response = client.post(f"/console/positions/{voided.pk}/settle", {"void": "on", "reason": "gone"}, follow=True)
    page = response.content.decode()
    assert "Voided position" in page and "olga from console: gone" in page and 'id="close-price"' not in page
    assert [(a.action, a.source) for a in OperatorAction.objects.order_by("id")] == [
        ("settle_price", "console"),
        ("void", "console"),
    ]
    assert Position.objects.get(pk=priced.pk).auto_close_reason == "manual_price"
    assert Position.objects.get(pk=voided.pk).status == "cancelled"
    assert '<dd id="stats-stuck">1 / 1</dd>' in client.get("/console/stats").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "data,words",
    [
        ({"price": "95", "void": "on", "reason": "r"}, "not both"),
        ({"reason": "r"}, "Give a close price"),
        ({"price": "95"}, "required"),
    ],
)
def test_a_bad_console_settle_changes_nothing_and_says_why(client, operator, prices, data, words):
    position = open_position(symbol=DELISTED)
    client.force_login(operator)
    page = client.post(f"/console/positions/{position.pk}/settle", data, follow=True).content.decode()
    assert "was not settled" in page and words in page
    assert Position.objects.get().status == "open" and not OperatorAction.objects.exists()


@pytest.mark.django_db
def test_the_console_refuses_a_symbol_with_a_price(client, operator, prices):
    position = open_position()
    client.force_login(operator)
    page = client.post(
        f"/console/positions/{position.pk}/settle", {"price": "95", "reason": "r"}, follow=True
    ).content.decode()
    assert "was not settled" in page and "use the normal close" in page
    assert Position.objects.get().status == "open"
