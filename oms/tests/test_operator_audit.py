"""Issue #12 §6: every manual action is recorded with who, when, from where and why; a console page
filters them; a position closed by hand shows who closed it."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from apitokens.models import ApiToken
from conftest import make_user
from oms.models import OmsSwitchChange, OperatorAction, OperatorSource, SwitchSource
from oms.services.epochs import epoch_start
from oms.services.execution import flatten
from oms.services.operator_audit import Operator, operator_action_record
from oms.services.switch import oms_switch_set
from oms.tests.factories import open_position
from pricing.quotes import QuoteError
from pricing.sources.dummy import DummySource

pytestmark = pytest.mark.django_db


@pytest.fixture
def dummy_prices(settings):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "dummy"


@pytest.fixture
def console(client, operator):
    client.force_login(operator)
    return client


def run(*args, **kwargs) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **kwargs)
    return out.getvalue()


def actions(**filters) -> list[tuple]:
    return list(
        OperatorAction.objects.filter(**filters)
        .order_by("id")
        .values_list("action", "actor", "source", "position_id", "reason")
    )


# --- closes ---------------------------------------------------------------------------------------------


def test_an_api_close_is_recorded_with_the_caller_the_source_and_the_reason(operator_client, operator, dummy_prices):
    position = open_position(entry="90")
    response = operator_client.post(f"/positions/{position.pk}/close", {"reason": "news spike"}, format="json")
    assert response.status_code == 200
    [row] = OperatorAction.objects.all()
    assert (row.action, row.actor, row.user, row.source, row.position_id, row.reason) == (
        "close",
        "olga",
        operator,
        "api",
        position.pk,
        "news spike",
    )
    assert row.details == {
        "via": "close",
        "close_reason": "manual",
        "symbol": "BTCUSDT",
        "close_price": "100.0000000000",
        "pnl": "10.0000000000",
    }


def test_a_second_close_of_a_closed_position_records_nothing_more(operator_client, dummy_prices):
    position = open_position()
    operator_client.post(f"/positions/{position.pk}/close")
    operator_client.post(f"/positions/{position.pk}/close")
    assert actions() == [("close", "olga", "api", position.pk, "")]


def test_a_refused_close_records_nothing(operator_client, monkeypatch, dummy_prices):
    def broken(self, symbol):
        raise QuoteError(symbol, "HTTP 502")

    monkeypatch.setattr(DummySource, "get_quote", broken)
    position = open_position()
    assert operator_client.post(f"/positions/{position.pk}/close").status_code == 503
    assert not OperatorAction.objects.exists()


def test_close_all_records_each_close_and_the_action_with_what_stayed_open(operator_client, monkeypatch, dummy_prices):
    real = DummySource.get_quote

    def flaky(self, symbol):
        if symbol == "ETHUSDT":
            raise QuoteError(symbol, "HTTP 502")
        return real(self, symbol)

    monkeypatch.setattr(DummySource, "get_quote", flaky)
    first, second, stuck = open_position(), open_position(), open_position(symbol="ETHUSDT")
    response = operator_client.post(
        "/positions/close-all", {"confirm": "CLOSE ALL", "reason": "exchange outage"}, format="json"
    )
    assert response.status_code == 200
    assert sorted(actions(action="close")) == [
        ("close", "olga", "api", first.pk, "exchange outage"),
        ("close", "olga", "api", second.pk, "exchange outage"),
    ]
    assert actions()[-1] == ("close_all", "olga", "api", None, "exchange outage")
    summary = OperatorAction.objects.get(action="close_all")
    assert sorted(summary.details["closed_ids"]) == [first.pk, second.pk]
    assert summary.details["failed"] == {"ETHUSDT": "HTTP 502"}
    assert OperatorAction.objects.get(position=first).details["via"] == "close_all"
    assert not OperatorAction.objects.filter(position=stuck).exists()


def test_console_close_and_close_all_are_recorded_from_the_console(console, dummy_prices):
    position, other = open_position(), open_position()
    response = console.post(f"/console/positions/{position.pk}/close", {"reason": "manual exit"})
    assert response.status_code == 302
    response = console.post("/console/positions/close-all", {"confirm": "CLOSE ALL", "reason": ""})
    assert response.status_code == 302
    assert actions() == [
        ("close", "olga", "console", position.pk, "manual exit"),
        ("close", "olga", "console", other.pk, ""),
        ("close_all", "olga", "console", None, ""),
    ]
    assert OperatorAction.objects.get(position=other).details["close_reason"] == "panic"


def test_the_admin_action_is_recorded_from_the_admin(client, dummy_prices):
    admin_user = make_user("ada", "operator", is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    position = open_position()
    response = client.post("/admin/oms/position/", {"action": "close_selected", "_selected_action": [position.pk]})
    assert response.status_code == 302
    [row] = OperatorAction.objects.all()
    assert (row.action, row.actor, row.source, row.position_id) == ("close", "ada", "admin", position.pk)
    assert row.details["via"] == "admin_action"


def test_the_close_all_command_is_recorded_with_the_os_user(monkeypatch, dummy_prices):
    monkeypatch.setattr("getpass.getuser", lambda: "deploy")
    position = open_position()
    run("close_all", "--yes", "--reason", "end of test")
    assert actions() == [
        ("close", "deploy (command)", "command", position.pk, "end of test"),
        ("close_all", "deploy (command)", "command", None, "end of test"),
    ]


def test_flatten_records_the_switch_each_close_and_the_flatten(dummy_prices, operator):
    position = open_position()
    result = flatten(actor="olga", reason="going flat", source=SwitchSource.DASHBOARD, user=operator)
    assert result.flat
    assert [a[:4] for a in actions()] == [
        ("switch", "olga", "console", None),
        ("close", "olga", "console", position.pk),
        ("flatten", "olga", "console", None),
    ]
    assert OperatorAction.objects.get(action="flatten").details["closed_ids"] == [position.pk]
    assert OperatorAction.objects.get(action="close").details["via"] == "flatten"


# --- switch, epoch, roles, tokens, restore ---------------------------------------------------------------


@pytest.mark.parametrize(
    "source,expected",
    [
        (SwitchSource.DASHBOARD, "console"),
        (SwitchSource.API, "api"),
        (SwitchSource.ADMIN, "admin"),
        (SwitchSource.COMMAND, "command"),
    ],
)
def test_a_switch_change_by_a_person_is_an_operator_action(source, expected):
    oms_switch_set(enabled=False, actor="olga", reason="maintenance", source=source)
    change = OmsSwitchChange.objects.get()
    [row] = OperatorAction.objects.all()
    assert (row.action, row.actor, row.source, row.reason) == ("switch", "olga", expected, "maintenance")
    assert row.details == {"enabled": False, "switch_change_id": change.pk}


def test_an_automatic_trip_is_not_an_operator_action():
    oms_switch_set(enabled=False, actor="trip", reason="automatic trip: 3 SL", source=SwitchSource.AUTO)
    assert OmsSwitchChange.objects.count() == 1 and not OperatorAction.objects.exists()


def test_the_switch_api_and_console_record_the_user(operator_client, console, operator):
    operator_client.post("/oms/switch", {"enabled": False, "reason": "by api"}, format="json")
    console.post("/console/switch", {"enabled": "on", "reason": "by console"})
    assert actions() == [("switch", "olga", "api", None, "by api"), ("switch", "olga", "console", None, "by console")]
    assert set(OperatorAction.objects.values_list("user", flat=True)) == {operator.pk}


def test_a_new_epoch_is_recorded(monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "deploy")
    run("new_epoch", "shadow-2", "--reason", "fresh book")
    [row] = OperatorAction.objects.all()
    assert (row.action, row.actor, row.source, row.reason) == ("epoch", "deploy (command)", "command", "fresh book")
    assert row.details["epoch"] == "shadow-2" and row.details["previous"] != "shadow-2"
    epoch_start(name="shadow-3", actor="olga", source=OperatorSource.CONSOLE)
    assert actions()[-1][:3] == ("epoch", "olga", "console")


def test_a_role_change_is_recorded(viewer, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "root")
    run("set_role", "victor", "operator", "--reason", "on call this week")
    [row] = OperatorAction.objects.all()
    assert (row.action, row.actor, row.source, row.reason) == (
        "role_change",
        "root (command)",
        "command",
        "on call this week",
    )
    assert row.details == {"username": "victor", "role": "operator", "created": False, "staff": False}


def test_token_creation_and_rotation_are_recorded_without_the_key(capsys):
    first = run("create_api_token", "rickybot", "--actor", "olga")
    second = run("create_api_token", "rickybot", "--rotate", "--reason", "leaked in a log")
    created, rotated = OperatorAction.objects.order_by("id")
    assert (created.action, created.actor, created.details["account"], created.details["role"]) == (
        "token_created",
        "olga",
        "rickybot",
        "bot",
    )
    assert (rotated.action, rotated.reason) == ("token_rotated", "leaked in a log")
    assert rotated.details["prefix"] == second.strip()[:8] == ApiToken.objects.get().prefix
    for row in (created, rotated):
        assert first.strip() not in str(row.details) and second.strip() not in str(row.details)


def test_an_unknown_action_or_source_is_refused():
    with pytest.raises(ValueError):
        operator_action_record(actor="olga", source="console", action="dance")
    with pytest.raises(ValueError):
        operator_action_record(actor="olga", source="phone", action="close")


def test_the_stop_move_hook_records_on_the_position():
    position = open_position()
    Operator(actor="olga", source="console", reason="tighten").record(
        "stop_move", position=position, details={"from": "98.5", "to": "99"}
    )
    assert actions() == [("stop_move", "olga", "console", position.pk, "tighten")]


# --- console --------------------------------------------------------------------------------------------


def test_the_audit_page_lists_and_filters_for_a_viewer(client, viewer):
    position, other = open_position(), open_position()
    operator_action_record(actor="olga", source="console", action="close", position=position, reason="why one")
    operator_action_record(actor="ivan", source="api", action="close", position=other, reason="why two")
    operator_action_record(actor="olga", source="command", action="epoch", reason="why three")
    client.force_login(viewer)
    page = client.get("/console/audit").content.decode()
    assert all(word in page for word in ("why one", "why two", "why three"))
    page = client.get(f"/console/audit?position={position.pk}").content.decode()
    assert "why one" in page and "why two" not in page and "why three" not in page
    page = client.get("/console/audit?actor=olga").content.decode()
    assert "why one" in page and "why three" in page and "why two" not in page
    page = client.get("/console/audit?action=epoch").content.decode()
    assert "why three" in page and "why one" not in page
    assert client.get("/console/audit?position=abc").status_code == 400


def test_the_audit_page_needs_a_login(client):
    response = client.get("/console/audit")
    assert response.status_code == 302 and "login" in response["Location"]


def test_a_position_closed_by_hand_shows_who_closed_it(console, dummy_prices):
    position, swept = open_position(), open_position()
    console.post(f"/console/positions/{position.pk}/close", {"reason": "manual exit"})
    page = console.get(f"/console/positions/{position.pk}").content.decode()
    assert 'id="closed-by"' in page and "olga from console: manual exit" in page
    assert f"/console/audit?position={position.pk}" in page
    from oms.services.positions import position_close

    position_close(position=swept, price=swept.entry_price, reason="tp")
    assert 'id="closed-by"' not in console.get(f"/console/positions/{swept.pk}").content.decode()
