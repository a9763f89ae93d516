"""Playwright driving the Debian Chromium against pytest-django's live server.

Without /usr/bin/chromium the browser tests skip, except when LOMS_REQUIRE_BROWSER=1 (set by .ci/run),
where a missing browser fails them: CI must never pass on skipped browser tests.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.management import create_contenttypes
from django.core.cache import cache

from apitokens.models import ApiToken
from oms.models import OmsControl

CHROMIUM = Path(os.environ.get("LOMS_CHROMIUM", "/usr/bin/chromium"))  # override only to test the skip/fail rule
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# `make screenshots` points this at docs/screenshots; plain test runs leave the committed ones alone.
SCREENSHOT_DIR = Path(
    os.environ.get("LOMS_SCREENSHOT_DIR") or Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
)


def _unavailable(why: str) -> None:
    if os.environ.get("LOMS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests are mandatory here (LOMS_REQUIRE_BROWSER=1) but {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium per test module (never `playwright install`: the system browser only)."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    # Playwright's sync API keeps an event loop in this thread; the ORM calls made by the tests
    # themselves would otherwise trip Django's async-safety check. Restored when the module ends.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(autouse=True)
def _roles(transactional_db):
    """The roles made by migration 0002, again: a transactional test before this one flushed them."""
    for app_config in django_apps.get_app_configs():
        create_contenttypes(app_config, verbosity=0)
        create_permissions(app_config, verbosity=0)
    roles = importlib.import_module("oms.migrations.0002_switch_row_and_roles").ROLES
    for role, codenames in roles.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(Permission.objects.filter(content_type__app_label="oms", codename__in=codenames))
    OmsControl.load()


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()  # the console caches book figures by a fingerprint that a flushed database can repeat


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def dummy_prices(settings):
    """Quotes at exactly 100.00 from the offline `dummy` exchange (the live server runs in-process)."""
    settings.PRICE_SOURCE = "exchange"
    settings.PRICE_EXCHANGE = "dummy"
    settings.PRICE_MODE = "last"
    settings.API_ALLOW_ANONYMOUS = False


@pytest.fixture
def bot_token(db) -> str:
    bot = User.objects.create_user(username="rickybot", password="pw-rickybot")
    bot.groups.add(Group.objects.get(name="bot"))
    return ApiToken.issue(bot)


def log_in(page, base_url: str, user: User) -> None:
    page.goto(f"{base_url}/")
    assert "/accounts/login/" in page.url  # the console needs a login
    page.fill("#id_username", user.username)
    page.fill("#id_password", f"pw-{user.username}")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")
