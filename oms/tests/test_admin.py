"""Admin: useful lists, read-only rows, and state changes through the services."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from oms.models import OmsControl, OmsSwitchChange, Position, PositionStatus, SwitchSource
from oms.tests.factories import closed_position, open_position


def staff_client(username: str, role: str) -> tuple[Client, User]:
    user = User.objects.create_user(username=username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client, user


@pytest.fixture
def dummy_prices(settings):
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "dummy"


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["position", "order", "signal", "omsswitchchange", "omscontrol", "autoclosemonitor"])
def test_every_model_has_an_admin_list(model, dummy_prices):
    client, _ = staff_client("ada", "operator")
    open_position()
    closed_position(pnl="-2", reason="sl")
    OmsControl.load()
    response = client.get(f"/admin/oms/{model}/")
    assert response.status_code == 200


@pytest.mark.django_db
def test_position_admin_is_read_only_with_computed_fields():
    client, _ = staff_client("ada", "operator")
    position = closed_position(pnl="2.5")
    page = client.get(f"/admin/oms/position/{position.pk}/change/").content.decode()
    assert "Holding time" in page and "Return on notional" in page and "2.500 %" in page
    assert 'name="pnl"' not in page  # no editable input
    assert client.get("/admin/oms/position/add/").status_code == 403


@pytest.mark.django_db
def test_position_admin_filters_and_searches(dummy_prices):
    client, _ = staff_client("ada", "viewer")
    open_position(symbol="BTCUSDT")
    open_position(symbol="ETHUSDT")
    closed_position(pnl="1", symbol="ETHUSDT")
    response = client.get("/admin/oms/position/", {"status__exact": "open", "q": "ETH"})
    assert [p.symbol for p in response.context["cl"].result_list] == ["ETHUSDT"]


@pytest.mark.django_db
def test_close_selected_goes_through_the_close_service(dummy_prices):
    client, _ = staff_client("ada", "operator")
    first, second = open_position(entry="90"), open_position(entry="95", symbol="ETHUSDT")
    done = closed_position(pnl="1")
    response = client.post(
        "/admin/oms/position/",
        {
            "action": "close_selected",
            "_selected_action": [first.pk, second.pk, done.pk],
        },
        follow=True,
    )
    page = response.content.decode()
    assert "Closed 2 position(s), PnL +15.0000 USDT." in page
    assert "1 selected position(s) were not open." in page
    for position in (first, second):
        position.refresh_from_db()
        assert (position.status, position.close_price, position.auto_close_reason) == (
            "closed",
            Decimal("100"),
            "manual",
        )
        assert position.orders.filter(purpose="exit").count() == 1


@pytest.mark.django_db
def test_a_viewer_in_the_admin_cannot_close(dummy_prices):
    client, _ = staff_client("vic", "viewer")
    position = open_position()
    page = client.get("/admin/oms/position/").content.decode()
    assert "close_selected" not in page
    client.post("/admin/oms/position/", {"action": "close_selected", "_selected_action": [position.pk]})
    assert Position.objects.get(pk=position.pk).status == PositionStatus.OPEN


@pytest.mark.django_db
def test_switching_in_the_admin_is_recorded_through_the_switch_service():
    client, user = staff_client("ada", "operator")
    OmsControl.load()
    response = client.post("/admin/oms/omscontrol/1/change/", {"change_reason": "maintenance window"})
    assert response.status_code == 302
    control = OmsControl.load()
    assert control.enabled is False and control.changed_by == "ada" and control.reason == "maintenance window"
    change = OmsSwitchChange.objects.get()
    assert (change.enabled, change.source, change.user) == (False, SwitchSource.ADMIN, user)


@pytest.mark.django_db
def test_switching_in_the_admin_needs_a_reason():
    client, _ = staff_client("ada", "operator")
    OmsControl.load()
    response = client.post("/admin/oms/omscontrol/1/change/", {"enabled": "on", "change_reason": ""})
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    assert not OmsSwitchChange.objects.exists()


@pytest.mark.django_db
def test_a_viewer_cannot_switch_in_the_admin():
    client, _ = staff_client("vic", "viewer")
    OmsControl.load()
    client.post("/admin/oms/omscontrol/1/change/", {"change_reason": "nope"})
    assert OmsControl.load().enabled is True
    assert not OmsSwitchChange.objects.exists()


@pytest.mark.django_db
def test_switch_history_is_read_only():
    client, _ = staff_client("ada", "operator")
    assert client.get("/admin/oms/omsswitchchange/add/").status_code == 403
