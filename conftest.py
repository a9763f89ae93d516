"""Shared fixtures: users with roles, API clients, a valid signal body."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from rest_framework.test import APIClient

from apitokens.models import ApiToken


@pytest.fixture(autouse=True)
def _isolated_audit_log(settings, tmp_path):
    settings.AUDIT_LOG_PATH = tmp_path / "audit" / "signals.jsonl"


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test's database starts from the same book version: no figures cached by another test."""
    cache.clear()


@pytest.fixture
def strict_api(settings):
    """The paper/live behaviour: no anonymous API access."""
    settings.API_ALLOW_ANONYMOUS = False


def make_user(username: str, role: str | None = None, **extra) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username, **extra)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def operator(db) -> User:
    return make_user("olga", "operator")


@pytest.fixture
def viewer(db) -> User:
    return make_user("victor", "viewer")


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def bot_client(db) -> APIClient:
    user = make_user("rickybot", "bot")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(user)}")
    return client


@pytest.fixture
def operator_client(operator) -> APIClient:
    client = APIClient()
    client.force_authenticate(operator)
    return client


@pytest.fixture
def viewer_client(viewer) -> APIClient:
    client = APIClient()
    client.force_authenticate(viewer)
    return client


@pytest.fixture
def signal_body():
    counter = iter(range(1, 10**9))

    def build(**overrides) -> dict:
        body = {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "price": 100.0,
            "timestamp": f"2025-06-19T10:{next(counter) % 60:02d}:00Z",
            "exchange": "bitget",
            "timeframe_min": 5,
            "strategy": "bounce_ema10_strict",
            "tp_pct": 4.5,
            "sl_pct": 1.5,
        }
        body.update(overrides)
        return {k: v for k, v in body.items() if v is not ...}

    return build


def pytest_sessionfinish(session, exitstatus):
    """The test database's write-queue lock file (lomsite/sqlite/queue.py) goes with the database."""
    from django.conf import settings

    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name and settings.DATABASES["default"]["ENGINE"] == "lomsite.sqlite":
        Path(f"{name}.writers").unlink(missing_ok=True)
