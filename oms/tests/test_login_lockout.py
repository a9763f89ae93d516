"""Login throttling (django-axes): failures are counted, logged as JSON, and lock the login."""

from __future__ import annotations

import json
import logging

import pytest
from django.core.management import call_command
from django.test import Client

from conftest import make_user
from lomsite.jsonlog import JsonFormatter

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


def try_login(client: Client, username: str, password: str, **headers):
    return client.post(LOGIN, {"username": username, "password": password}, **headers)


def logged_in(response) -> bool:
    return response.status_code == 302


@pytest.fixture
def limits(settings):
    settings.AXES_FAILURE_LIMIT = 3


def test_failed_logins_lock_the_account_then_even_the_right_password_is_refused(limits, operator, caplog):
    caplog.set_level(logging.INFO)
    client = Client()
    for _ in range(2):
        assert try_login(client, "olga", "wrong").status_code == 200  # the form again, with its error
    assert try_login(client, "olga", "wrong").status_code == 429  # the third failure locks
    assert try_login(client, "olga", "pw-olga").status_code == 429  # locked: the right password too
    events = [record for record in caplog.records if record.name == "loms.auth"]
    assert [record.getMessage() for record in events].count("login_failed") >= 3
    assert "login_locked_out" in [record.getMessage() for record in events]
    line = json.loads(JsonFormatter().format(next(r for r in events if r.getMessage() == "login_failed")))
    assert line["username"] == "olga" and line["ip"] == "127.0.0.1" and line["path"] == LOGIN
    assert "wrong" not in "\n".join(JsonFormatter().format(record) for record in caplog.records)


def test_axes_reset_username_unlocks(limits, operator):
    client = Client()
    for _ in range(3):
        try_login(client, "olga", "wrong")
    assert try_login(client, "olga", "pw-olga").status_code == 429
    call_command("axes_reset_username", "olga")
    assert logged_in(try_login(client, "olga", "pw-olga"))


def test_a_success_resets_the_count(limits, operator):
    client = Client()
    for _ in range(2):
        try_login(client, "olga", "wrong")
    assert logged_in(try_login(client, "olga", "pw-olga"))
    for _ in range(2):
        assert try_login(Client(), "olga", "wrong").status_code == 200  # counting from zero again


def test_the_lockout_is_per_account_and_address_by_default(limits, operator, viewer):
    attacker = {"REMOTE_ADDR": "203.0.113.9"}
    for _ in range(3):
        try_login(Client(), "olga", "wrong", **attacker)
    assert try_login(Client(), "olga", "pw-olga", **attacker).status_code == 429
    assert logged_in(try_login(Client(), "olga", "pw-olga"))  # the operator, from her own address
    assert logged_in(try_login(Client(), "victor", "pw-victor", **attacker))  # another account


def test_behind_the_proxy_the_address_is_the_one_the_proxy_saw_not_a_forged_one(limits, settings, operator):
    settings.BEHIND_TLS_PROXY = True
    for forged in ["198.51.100.1", "198.51.100.2", "198.51.100.3"]:
        # The client forges the left part; nginx appends the address it saw (203.0.113.9).
        try_login(
            Client(),
            "olga",
            "wrong",
            HTTP_X_FORWARDED_FOR=f"{forged}, 203.0.113.9",
            HTTP_X_FORWARDED_PROTO="https",
            secure=True,
        )
    assert (
        try_login(
            Client(), "olga", "pw-olga", HTTP_X_FORWARDED_FOR="203.0.113.9", HTTP_X_FORWARDED_PROTO="https", secure=True
        ).status_code
        == 429
    )
    assert logged_in(
        try_login(
            Client(), "olga", "pw-olga", HTTP_X_FORWARDED_FOR="192.0.2.7", HTTP_X_FORWARDED_PROTO="https", secure=True
        )
    )


def test_the_test_clients_login_and_force_login_are_not_throttled(limits, operator):
    """The suites log in many times: a login without a request (test client, shell) is not an HTTP
    login, and each test's database (the attempts) starts empty."""
    for _ in range(4):  # more than the limit of 3
        assert Client().login(username="olga", password="pw-olga")
        assert not Client().login(username="olga", password="wrong")
    assert logged_in(try_login(Client(), "olga", "pw-olga"))


def test_the_admin_login_is_throttled_too(limits):
    make_user("root", is_staff=True, is_superuser=True)
    for _ in range(3):
        Client().post("/admin/login/", {"username": "root", "password": "wrong"})
    assert Client().post("/admin/login/", {"username": "root", "password": "pw-root"}).status_code == 429


def test_an_overlong_username_is_a_failed_login_never_a_500(limits):
    """Axes' column holds 255 characters; PostgreSQL refused a 256-character name with a 500."""
    client = Client()
    for _ in range(3):
        response = try_login(client, "a" * 300, "wrong")
    assert response.status_code == 429  # counted (as its first 150 characters) and locked like any other
    assert try_login(client, "b" * 300, "wrong").status_code == 200
