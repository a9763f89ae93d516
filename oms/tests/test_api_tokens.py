"""API tokens are stored hashed: a backup hands out no working key; the wire format is unchanged."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient

from apitokens.models import ApiToken, hash_key
from conftest import make_user

pytestmark = pytest.mark.django_db

hash_plain_tokens = importlib.import_module("apitokens.migrations.0002_hash_plain_tokens").hash_plain_tokens


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def stored_text() -> str:
    """Every value of every row of every LOMS table, as a backup would hold them."""
    values = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            values += [str(value) for row in cursor.fetchall() for value in row]
    return "\n".join(values)


def test_the_key_is_shown_once_and_only_its_hash_is_stored(strict_api, capsys):
    call_command("create_api_token", "rickybot")
    key = capsys.readouterr().out.strip()
    assert len(key) == 40
    token = ApiToken.objects.get(user__username="rickybot")
    assert token.key_hash == hash_key(key) and token.prefix == key[:8]
    assert key not in stored_text()
    assert token_client(key).get("/positions").status_code == 200


def test_a_second_create_without_rotate_refuses_instead_of_showing_the_key(strict_api, capsys):
    call_command("create_api_token", "rickybot")
    key = capsys.readouterr().out.strip()
    with pytest.raises(CommandError, match="cannot be shown again"):
        call_command("create_api_token", "rickybot")
    assert key not in capsys.readouterr().out
    call_command("create_api_token", "rickybot", "--rotate")
    new_key = capsys.readouterr().out.strip()
    assert new_key != key
    assert token_client(key).get("/positions").status_code == 401
    assert token_client(new_key).get("/positions").status_code == 200


@pytest.mark.parametrize(
    "header", ["Token", "Token a b", "Token not-a-key", "Token " + "0" * 40, "Bearer x", "Token \u00e9\u00e9"]
)
def test_a_wrong_or_malformed_token_is_401(strict_api, header):
    ApiToken.issue(make_user("rickybot", "bot"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/positions").status_code in (401, 403)


def test_an_inactive_users_token_is_refused(strict_api):
    user = make_user("rickybot", "bot")
    key = ApiToken.issue(user)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert token_client(key).get("/positions").status_code == 401


def test_the_migration_hashes_existing_plain_tokens_and_drops_the_plain_table(strict_api, signal_body):
    """An installation upgraded from DRF's authtoken: its bot keeps its key, the database loses it."""
    bot = make_user("rickybot", "bot")
    viewer = make_user("victor", "viewer")
    plain = {bot.pk: "a" * 20 + "0123456789abcdef0123", viewer.pk: "f" * 40}
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE authtoken_token ({quote('key')} varchar(40) PRIMARY KEY, "
            f"{quote('created')} timestamp with time zone NOT NULL, {quote('user_id')} integer NOT NULL)"
            if connection.vendor == "postgresql"
            else f"CREATE TABLE authtoken_token ({quote('key')} varchar(40) PRIMARY KEY, "
            f"{quote('created')} datetime NOT NULL, {quote('user_id')} integer NOT NULL)"
        )
        for user_id, key in plain.items():
            cursor.execute(
                f"INSERT INTO authtoken_token ({quote('key')}, {quote('created')}, {quote('user_id')}) "
                "VALUES (%s, %s, %s)",
                [key, "2025-01-02 03:04:05", user_id],
            )
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES ('authtoken', '0001_initial', "
            "'2025-01-02 03:04:05')"
        )
    hash_plain_tokens(apps, SimpleNamespace(connection=connection))
    assert "authtoken_token" not in connection.introspection.table_names()
    assert not any(key in stored_text() for key in plain.values())
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM django_migrations WHERE app = 'authtoken'")
        assert cursor.fetchone()[0] == 0
    assert ApiToken.objects.get(user=bot).created.year == 2025
    response = token_client(plain[bot.pk]).post("/signals/bounce", data=signal_body(), format="json")
    assert response.status_code == 200 and response.json()["risk_ok"] is True
    assert token_client(plain[viewer.pk]).get("/positions").status_code == 200
    hash_plain_tokens(apps, SimpleNamespace(connection=connection))  # again (a fresh database): nothing to do
