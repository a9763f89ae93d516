"""Security: who may write, CSRF on the console forms, and no secret in any answer, page or log line."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from lomsite.jsonlog import JsonFormatter
from oms.api.hmac_auth import sign_body
from oms.api.urls import urlpatterns as api_routes
from oms.models import Notification, OmsControl, Position, PositionStatus, Signal, StrategyControl
from oms.services.switch import switch_state
from oms.tests.factories import open_position

pytestmark = pytest.mark.django_db


def concrete_path(route, position_id: int) -> str:
    """`^positions/(?P<position_id>[^/]+)/close/?$` → `/positions/7/close`."""
    pattern = route.pattern.regex.pattern.lstrip("^").replace("/?$", "").rstrip("$")
    pattern = re.sub(r"\(\?P<strategy>[^)]*\)", "bounce_ema10_strict", pattern)
    return "/" + re.sub(r"\(\?P<position_id>[^)]*\)", str(position_id), pattern)


WRITE_ROUTES = [r for r in api_routes if hasattr(r.callback.view_class, "post")]


def test_the_write_routes_are_the_ones_we_expect_so_a_new_one_is_not_missed():
    names = sorted(r.name for r in WRITE_ROUTES)
    assert names == [
        "order-list",
        "position-close",
        "position-close-all",
        "position-settle",
        "signal-bounce",
        "signal-exit",
        "signal-stop",
        "strategy-control",
        "switch",
    ]


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=lambda r: r.name)
@pytest.mark.parametrize("slash", ["", "/"])
def test_every_write_endpoint_refuses_anonymous_callers_outside_dev(strict_api, anon_client, signal_body, route, slash):
    position = open_position()
    body = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "qty": 1,
        "entry_price": 100,
        "confirm": "CLOSE ALL",
        "enabled": False,
        "reason": "anonymous",
        **signal_body(),
    }
    response = anon_client.post(concrete_path(route, position.pk) + slash, body, format="json")
    assert response.status_code in (401, 403)
    position.refresh_from_db()
    assert position.status == PositionStatus.OPEN and Position.objects.count() == 1
    assert switch_state().enabled and not Signal.objects.exclude(outcome="rejected").exists()
    assert not StrategyControl.objects.exists()


def test_a_viewer_cannot_close_or_switch_through_the_api(strict_api, viewer_client):
    position = open_position()
    assert viewer_client.post(f"/positions/{position.pk}/close").status_code == 403
    assert viewer_client.post("/positions/close-all", {"confirm": "CLOSE ALL"}, format="json").status_code == 403
    assert viewer_client.post("/oms/switch", {"enabled": False, "reason": "x"}, format="json").status_code == 403
    position.refresh_from_db()
    assert position.status == PositionStatus.OPEN and switch_state().enabled


def console_posts(position: Position) -> list[tuple[str, dict]]:
    return [
        (reverse("oms:position-close", args=[position.pk]), {}),
        (reverse("oms:position-close-all"), {"confirm": "CLOSE ALL"}),
        (reverse("oms:switch"), {"enabled": "off", "reason": "testing"}),
        (reverse("oms:position-stop", args=[position.pk]), {"break_even": "on"}),
    ]


def assert_untouched(position: Position) -> None:
    position.refresh_from_db()
    assert position.status == PositionStatus.OPEN and OmsControl.load().enabled
    assert position.sl_price == Decimal("98.5")


def test_a_viewer_cannot_close_or_switch_from_the_dashboard(viewer):
    client = Client()
    client.force_login(viewer)
    position = open_position()
    for url, data in console_posts(position):
        assert client.post(url, data).status_code == 403, url
    assert_untouched(position)


def test_dashboard_forms_refuse_a_post_without_the_csrf_token(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    position = open_position()
    for url, data in console_posts(position):
        assert client.post(url, data).status_code == 403, url
    assert_untouched(position)
    # The same request with the token from the page is accepted: the refusal above was the CSRF check.
    client.get(reverse("oms:switch"))
    token = client.cookies["csrftoken"].value
    assert (
        client.post(reverse("oms:switch"), {"enabled": "off", "reason": "t", "csrfmiddlewaretoken": token}).status_code
        == 302
    )
    assert not OmsControl.load().enabled


def test_the_api_refuses_a_session_post_without_the_csrf_token(strict_api, operator):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(operator)
    response = client.post("/oms/switch", {"enabled": False, "reason": "csrf"}, format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert switch_state().enabled


# --- cross-site requests in the dev profile (anonymous API) -------------------------------------

FOREIGN = "https://evil.example"


def cross_site_posts(position: Position) -> list[tuple[str, dict]]:
    return [
        ("/positions/close-all", {"confirm": "CLOSE ALL"}),
        ("/oms/switch", {"enabled": "false", "reason": "cross-site"}),
        (f"/positions/{position.pk}/close", {"go": "1"}),  # a form always sends its Content-Type
        ("/orders", {"symbol": "ETHUSDT", "side": "BUY", "qty": "1", "entry_price": "100"}),
    ]


def assert_nothing_changed(position: Position) -> None:
    position.refresh_from_db()
    assert position.status == PositionStatus.OPEN and Position.objects.count() == 1 and switch_state().enabled


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_ORIGIN": FOREIGN, "HTTP_REFERER": FOREIGN + "/page", "HTTP_SEC_FETCH_SITE": "cross-site"},
        {"HTTP_ORIGIN": FOREIGN},
        {"HTTP_REFERER": FOREIGN + "/page"},  # an older browser: no Origin on a form POST
        {"HTTP_ORIGIN": "null"},  # a sandboxed frame or a data: page
        {},  # neither header (Referrer-Policy: no-referrer): the form content type still gives it away
    ],
    ids=["origin+referer", "origin", "referer", "null-origin", "no-headers"],
)
@pytest.mark.parametrize("encoding", ["form", "multipart", "text"])
def test_dev_a_cross_site_form_post_cannot_close_switch_or_order(settings, headers, encoding):
    """What a foreign page can make the developer's browser send to http://127.0.0.1:8000: a simple
    request (form encodings, no custom header), no CSRF token, the session cookie withheld (SameSite)."""
    assert settings.API_ALLOW_ANONYMOUS is True  # the dev default this is about
    position = open_position()
    client = Client(enforce_csrf_checks=True)
    for url, data in cross_site_posts(position):
        if encoding == "form":
            response = client.post(url, urlencode(data), content_type="application/x-www-form-urlencoded", **headers)
        elif encoding == "multipart":
            response = client.post(url, data, **headers)
        else:
            response = client.post(url, json.dumps(data), content_type="text/plain", **headers)
        assert response.status_code == 403, (url, response.content)
    assert_nothing_changed(position)


def test_dev_a_cross_site_post_with_a_forged_csrf_token_is_refused(settings):
    position = open_position()
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = "a" * 32
    response = client.post(
        "/positions/close-all",
        {"confirm": "CLOSE ALL", "csrfmiddlewaretoken": "b" * 32},
        HTTP_ORIGIN=FOREIGN,
        HTTP_X_CSRFTOKEN="b" * 32,
    )
    assert response.status_code == 403
    assert_nothing_changed(position)


def test_dev_scripts_still_work_without_a_token_and_the_same_site_page_with_its_csrf_token(settings):
    position = open_position()
    script = Client(enforce_csrf_checks=True)  # curl / the bot's scripts: JSON, no Origin, no cookie
    switched = script.post("/oms/switch", {"enabled": False, "reason": "script"}, content_type="application/json")
    assert switched.status_code == 200 and not switch_state().enabled
    page = Client(enforce_csrf_checks=True)  # a page of LOMS itself (same origin), with its token
    page.get(reverse("login"))
    token = page.cookies["csrftoken"].value
    closed = page.post(f"/positions/{position.pk}/close", HTTP_ORIGIN="http://testserver", HTTP_X_CSRFTOKEN=token)
    assert closed.status_code == 200 and closed.json()["closed_now"] is True


# --- secrets ------------------------------------------------------------------------------------

SECRET_KEY = "sk-MARKER-6c1f0e9b2a-do-not-leak-0123456789abcdefghijklmnopq"
HMAC_SECRET = "hmac-MARKER-41d7be"
DB_PASSWORD = "dbpw-MARKER-93af"
MARKERS = (SECRET_KEY, HMAC_SECRET, DB_PASSWORD, "MARKER")


def leaks(text: str) -> list[str]:
    return [marker for marker in MARKERS if marker in text]


def test_no_secret_appears_in_any_response_page_or_log_line(
    settings, caplog, capsys, tmp_path, django_capture_on_commit_callbacks
):
    settings.SECRET_KEY = SECRET_KEY
    settings.SIGNAL_HMAC_SECRET = HMAC_SECRET
    settings.DATABASE_URL = f"postgres://loms:{DB_PASSWORD}@db.example:5432/loms"
    settings.NOTIFY_URLS = "json://hook:notifypw-MARKER-77@127.0.0.1:9/loms-MARKER-path"  # port 9: refused
    settings.API_ALLOW_ANONYMOUS = False
    settings.PRICE_SOURCE = "simulator"
    caplog.set_level(logging.DEBUG)
    admin = User.objects.create_superuser("root", password="pw-root-long-enough")
    position = open_position(created_at=timezone.now() - timedelta(minutes=5))
    open_position(symbol="ETHUSDT")
    client = Client()
    client.force_login(admin)
    bodies: dict[str, str] = {}

    # A signed signal (the secret is used, never echoed), a rejected one, and a bad signature.
    raw = json.dumps({"symbol": "SOLUSDT", "side": "BUY", "price": 10.0, "timestamp": "2025-06-19T10:15:00Z"}).encode()
    stamp = str(int(time.time()))
    with django_capture_on_commit_callbacks(execute=True):  # position_opened is logged after the commit
        signed = client.post(
            "/signals/bounce",
            raw,
            content_type="application/json",
            HTTP_X_SIGNATURE=sign_body(HMAC_SECRET, stamp, raw),
            HTTP_X_TIMESTAMP=stamp,
        )
    assert signed.status_code == 200 and signed.json()["risk_ok"] is True
    bodies["signed signal"] = signed.content.decode()
    bodies["badly signed"] = client.post(
        "/signals/bounce", raw, content_type="application/json", HTTP_X_SIGNATURE="sha256=00", HTTP_X_TIMESTAMP=stamp
    ).content.decode()
    for url in [
        "/health",
        "/stats",
        "/stats?group_by=symbol",
        "/positions",
        "/orders",
        "/signals",
        "/market?symbol=BTCUSDT",
        "/oms/switch",
        "/api/schema",
        "/docs",
        "/",
        "/console/positions",
        f"/console/positions/{position.pk}",
        f"/console/positions/{position.pk}/close",
        "/console/orders",
        "/console/signals",
        "/console/stats",
        "/console/switch",
        "/console/positions/close-all",
        "/admin/",
        "/admin/oms/position/",
        f"/admin/oms/position/{position.pk}/change/",
        "/admin/oms/signal/",
        "/admin/oms/omscontrol/",
        "/accounts/login/",
        "/positions/999999/close",
    ]:
        response = client.get(url)
        assert response.status_code < 500, url
        bodies[url] = response.content.decode(errors="replace")
    with django_capture_on_commit_callbacks(execute=True):  # a close is logged once committed
        bodies["manual close"] = client.post(f"/positions/{position.pk}/close").content.decode()
    bodies["switch off"] = client.post(
        "/oms/switch", json.dumps({"enabled": False, "reason": "r"}), content_type="application/json"
    ).content.decode()
    from oms.services.notify import notification_deliver  # the switch alert fails: its error is shown

    for notification in Notification.objects.filter(status="pending"):
        notification_deliver(notification.pk, now=timezone.now() + timedelta(days=1))
    assert Notification.objects.exclude(error="").exists()
    bodies["alerts page"] = client.get("/console/notifications").content.decode()
    show_config = io.StringIO()
    call_command("show_config", stdout=show_config)
    bodies["show_config"] = show_config.getvalue()
    bodies["audit log"] = settings.AUDIT_LOG_PATH.read_text()

    formatter = JsonFormatter()
    bodies["log lines"] = "\n".join(formatter.format(record) for record in caplog.records)
    captured = capsys.readouterr()
    bodies["stdout/stderr"] = captured.out + captured.err
    assert len(caplog.records) > 5 and "position_closed" in bodies["log lines"]
    assert {name: leaks(text) for name, text in bodies.items() if leaks(text)} == {}


QUERY_PASSWORD = "query-pw-marker-5b1f0c"


@pytest.mark.django_db
def test_a_password_in_the_database_url_query_string_is_masked_in_show_config_and_health(settings, tmp_path):
    """dj-database-url hands `?password=` to the driver: it is a password like `user:password@`."""
    import subprocess
    import sys

    from tests.support import ROOT, sqlite_process_env

    url = f"postgres://loms@127.0.0.1:9/loms?sslmode=prefer&password={QUERY_PASSWORD}"
    env = {**sqlite_process_env(tmp_path / "x.sqlite3"), "DATABASE_URL": url}
    shown = subprocess.run(
        [sys.executable, "manage.py", "show_config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert "DATABASE_URL" in shown.stdout and "password=***" in shown.stdout
    assert QUERY_PASSWORD not in shown.stdout + shown.stderr
    bad = {**env, "DATABASE_URL": f"nosuchdb://loms@h/loms?password={QUERY_PASSWORD}"}
    refused = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=bad, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode != 0 and "DATABASE_URL" in refused.stderr and QUERY_PASSWORD not in refused.stderr

    settings.DATABASE_URL = url
    anonymous = Client().get("/health").content.decode()
    assert QUERY_PASSWORD not in anonymous and "database_url" not in anonymous  # details are for logged-in callers
    client = Client()
    client.force_login(User.objects.create_user("health-reader"))
    health = client.get("/health").content.decode()
    assert "password=***" in health and QUERY_PASSWORD not in health


@pytest.mark.django_db(transaction=True)  # the backup reads the database file through its own connection
def test_a_backup_hands_out_no_working_api_key(settings, tmp_path):
    """Whoever gets a backup file gets the database: it must hold no key that works against the API."""
    import tarfile

    from apitokens.models import ApiToken
    from conftest import make_user
    from ops.backups import backup_create

    settings.BACKUP_DIR = tmp_path / "backups"
    settings.API_ALLOW_ANONYMOUS = False
    key = ApiToken.issue(make_user("rickybot"))  # no role: an earlier transactional test may have flushed the groups
    path = backup_create().path
    with tarfile.open(path) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    everything = b"".join(p.read_bytes() for p in (tmp_path / "unpacked").rglob("*") if p.is_file())
    assert key.encode() not in everything
    if not connection_is_postgres():  # pg_dump's custom format compresses the rows
        assert ApiToken.objects.get().key_hash.encode() in everything  # the row is there: its hash only
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/positions").status_code == 200  # the key itself works


def connection_is_postgres() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"
