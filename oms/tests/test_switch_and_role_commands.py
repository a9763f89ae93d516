"""manage.py oms_switch and set_role."""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from oms.models import OmsControl, OmsSwitchChange, SwitchSource
from oms.tests.factories import open_position


def run(*args, **kwargs) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **kwargs)
    return out.getvalue()


@pytest.mark.django_db
def test_oms_switch_off_is_recorded_with_actor_and_reason():
    output = run("oms_switch", "off", "--reason", "exchange maintenance", "--actor", "ops-oncall")
    assert "OMS OFF" in output
    change = OmsSwitchChange.objects.get()
    assert (change.enabled, change.changed_by, change.reason, change.source) == (
        False,
        "ops-oncall",
        "exchange maintenance",
        SwitchSource.COMMAND,
    )
    assert OmsControl.load().enabled is False


@pytest.mark.django_db
def test_oms_switch_on_defaults_the_actor_to_the_os_user(monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "deploy")
    run("oms_switch", "off", "--reason", "x")
    run("oms_switch", "on", "--reason", "back to normal")
    assert OmsControl.load().enabled is True
    assert OmsSwitchChange.objects.first().changed_by == "deploy (command)"


@pytest.mark.django_db
def test_oms_switch_refuses_a_change_without_reason():
    with pytest.raises(CommandError, match="reason is required"):
        run("oms_switch", "off", "--reason", "   ")
    assert OmsControl.load().enabled is True


@pytest.mark.django_db
def test_oms_switch_without_arguments_shows_the_state_and_the_environment_override(settings):
    settings.OMS_ENABLED = False
    output = run("oms_switch")
    assert "OMS OFF" in output and "OMS_ENABLED=false" in output
    assert not OmsSwitchChange.objects.exists()


@pytest.mark.django_db
def test_the_next_signal_after_oms_switch_off_is_refused(anon_client, signal_body):
    run("oms_switch", "off", "--reason", "pause")
    body = anon_client.post("/signals/bounce", signal_body(), format="json").json()
    assert body["oms_enabled"] is False and "pause" in body["reason"]


@pytest.mark.django_db
def test_set_role_makes_an_existing_user_operator_and_removes_viewer(viewer):
    assert not viewer.has_perm("oms.close_position")
    output = run("set_role", viewer.username, "operator")
    user = User.objects.get(pk=viewer.pk)
    assert "is now operator" in output
    assert sorted(user.groups.values_list("name", flat=True)) == ["operator"]
    assert user.has_perm("oms.close_position") and user.has_perm("oms.change_switch")


@pytest.mark.django_db
def test_set_role_back_to_viewer_removes_the_close_permission(operator):
    run("set_role", operator.username, "viewer")
    user = User.objects.get(pk=operator.pk)
    assert not user.has_perm("oms.close_position") and user.has_perm("oms.view_position")


@pytest.mark.django_db
def test_set_role_refuses_an_unknown_user_without_create():
    with pytest.raises(CommandError, match="--create"):
        run("set_role", "ghost", "viewer")
    assert not User.objects.filter(username="ghost").exists()


@pytest.mark.django_db
def test_set_role_creates_a_user_with_a_random_password_shown_once():
    output = run("set_role", "nina", "viewer", "--create", "--random-password", "--staff")
    password = output.split("password: ")[1].split()[0]
    user = User.objects.get(username="nina")
    assert user.check_password(password) and user.is_staff
    assert list(user.groups.values_list("name", flat=True)) == ["viewer"]


@pytest.mark.django_db
def test_set_role_creates_a_user_with_a_prompted_password(monkeypatch):
    answers = iter(["short", "short", "a-long-enough-passphrase", "a-long-enough-passphrase"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    monkeypatch.setattr("ops.management.commands.set_role._has_terminal", lambda: True)  # someone types
    run("set_role", "otto", "operator", "--create")
    assert User.objects.get(username="otto").check_password("a-long-enough-passphrase")


@pytest.mark.django_db
def test_a_role_given_by_command_opens_the_console_for_that_user(client):
    run("set_role", "vera", "viewer", "--create", "--random-password")
    client.force_login(User.objects.get(username="vera"))
    open_position()
    assert client.get("/console/positions").status_code == 200
    assert client.post("/console/positions/close-all", {"confirm": "CLOSE ALL"}).status_code == 403
