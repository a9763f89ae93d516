"""Who may call what: tokens for bots, sessions for people, HMAC-signed webhooks, dev openness."""

import json
import time

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apitokens.models import ApiToken
from conftest import make_user
from oms.api.hmac_auth import sign_body
from oms.models import OmsControl, Position, PositionStatus
from oms.tests.factories import open_position

pytestmark = pytest.mark.django_db

WRITES = [
    ("post", "/signals/bounce"),
    ("post", "/orders"),
    ("post", "/positions/1/close"),
    ("post", "/positions/close-all"),
    ("post", "/oms/switch"),
]
READS = ["/positions", "/orders", "/stats", "/signals", "/market?symbol=BTCUSDT", "/oms/switch"]


@pytest.mark.parametrize("method,path", WRITES)
def test_writes_refuse_anonymous_callers_outside_dev(strict_api, anon_client, method, path):
    response = getattr(anon_client, method)(path, data={}, format="json")
    assert response.status_code in (401, 403)


@pytest.mark.parametrize("path", READS)
def test_reads_need_authentication_outside_dev(strict_api, anon_client, path):
    assert anon_client.get(path).status_code in (401, 403)


def test_health_is_open_to_anonymous_callers(strict_api, anon_client):
    assert anon_client.get("/health").status_code == 200


def test_a_bot_token_can_send_signals(strict_api, bot_client, signal_body):
    response = bot_client.post("/signals/bounce", data=signal_body(), format="json")
    assert response.status_code == 200 and response.json()["risk_ok"] is True


def test_a_viewer_can_read_but_not_write(strict_api, viewer_client, signal_body):
    assert viewer_client.get("/positions").status_code == 200
    assert viewer_client.post("/signals/bounce", data=signal_body(), format="json").status_code == 403
    assert viewer_client.post("/oms/switch", data={"enabled": False, "reason": "x"}, format="json").status_code == 403
    assert Position.objects.count() == 0


def test_a_bot_cannot_flip_the_switch(strict_api, bot_client):
    response = bot_client.post("/oms/switch", data={"enabled": False, "reason": "x"}, format="json")
    assert response.status_code == 403


def test_the_bot_role_ingests_and_reads_but_cannot_close_close_all_or_create_orders(
    strict_api, bot_client, signal_body
):
    position = open_position()
    assert bot_client.get("/positions").status_code == 200
    assert bot_client.post(f"/positions/{position.pk}/close").status_code == 403
    assert bot_client.post("/positions/close-all", {"confirm": "CLOSE ALL"}, format="json").status_code == 403
    order = {"symbol": "ETHUSDT", "side": "BUY", "qty": 1, "entry_price": 100}
    assert bot_client.post("/orders", order, format="json").status_code == 403
    position.refresh_from_db()
    assert position.status == "open" and Position.objects.count() == 1
    assert bot_client.post("/signals/bounce", data=signal_body(), format="json").status_code == 200


def test_an_operator_can_create_orders_and_close(strict_api, operator_client):
    order = {"symbol": "ETHUSDT", "side": "BUY", "qty": 1, "entry_price": 100}
    created = operator_client.post("/orders", order, format="json")
    assert created.status_code == 201
    closed = operator_client.post(f"/positions/{created.json()['position_id']}/close")
    assert closed.status_code == 200 and closed.json()["closed_now"] is True


def test_the_roles_hold_exactly_their_permissions_after_the_migrations():
    def codenames(role: str) -> set[str]:
        return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))

    views = {p for p in codenames("viewer") if p.startswith("view_")}
    assert codenames("viewer") == views
    assert codenames("bot") == views | {"trade"}
    assert codenames("operator") == views | {"trade", "create_order", "close_position", "change_switch"}


def test_an_operator_can_flip_the_switch_and_it_is_recorded(strict_api, operator_client):
    response = operator_client.post("/oms/switch", data={"enabled": False, "reason": "news"}, format="json")
    assert response.status_code == 200
    assert response.json()["oms_enabled"] is False and response.json()["changed_by"] == "olga"


def test_session_writes_need_a_csrf_token(strict_api, operator, signal_body):
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="olga", password="pw-olga")
    response = client.post("/signals/bounce", data=signal_body(), format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


def test_dev_profile_lets_the_old_scripts_call_without_a_token(anon_client, signal_body, settings):
    assert settings.API_ALLOW_ANONYMOUS is True  # the dev default
    assert anon_client.post("/signals/bounce", data=signal_body(), format="json").status_code == 200
    assert anon_client.get("/stats").status_code == 200


def test_create_api_token_prints_a_working_token(strict_api, capsys, signal_body):
    call_command("create_api_token", "rickybot")
    token = capsys.readouterr().out.strip()
    assert len(token) == 40
    assert User.objects.get(username="rickybot").groups.filter(name="bot").exists()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.post("/signals/bounce", data=signal_body(), format="json").json()["risk_ok"] is True


def test_create_api_token_rotate_replaces_the_token(strict_api, capsys):
    call_command("create_api_token", "rickybot")
    first = capsys.readouterr().out.strip()
    call_command("create_api_token", "rickybot", "--rotate")
    assert capsys.readouterr().out.strip() != first


class TestHmacSignedSignals:
    SECRET = "hmac-secret-for-tests"

    @pytest.fixture(autouse=True)
    def _secret(self, settings, strict_api):
        settings.SIGNAL_HMAC_SECRET = self.SECRET

    def signed_post(self, client, body: dict, *, secret=None, ts=None, key=None, sign_key=True):
        raw = json.dumps(body).encode()
        ts = str(int(time.time()) if ts is None else ts)
        extra = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
        signature = sign_body(secret or self.SECRET, ts, raw, key if sign_key else None)
        return client.post(
            "/signals/bounce",
            data=raw,
            content_type="application/json",
            HTTP_X_TIMESTAMP=ts,
            HTTP_X_SIGNATURE=signature,
            **extra,
        )

    def test_a_signed_idempotency_key_is_accepted_and_dedupes(self, anon_client, signal_body):
        body = signal_body()
        first = self.signed_post(anon_client, body, key="k-1")
        again = self.signed_post(anon_client, body, key="k-1")
        assert first.status_code == again.status_code == 200
        assert again.json()["duplicate"] is True and Position.objects.count() == 1

    def test_a_replay_with_a_new_idempotency_key_is_401_and_opens_nothing(self, anon_client, signal_body):
        body = signal_body()
        assert self.signed_post(anon_client, body).status_code == 200
        for key in ["fresh-1", "fresh-2", ""]:
            # The captured signature (made without a key) with a key added: it does not cover the key.
            replay = self.signed_post(anon_client, body, key=key, sign_key=False)
            assert replay.status_code == 401
        assert Position.objects.count() == 1

    def test_a_replay_with_its_idempotency_key_changed_or_removed_is_401(self, anon_client, signal_body):
        raw = json.dumps(signal_body()).encode()
        ts = str(int(time.time()))
        signature = sign_body(self.SECRET, ts, raw, "k-1")

        def post(**extra):
            return anon_client.post(
                "/signals/bounce",
                data=raw,
                content_type="application/json",
                HTTP_X_TIMESTAMP=ts,
                HTTP_X_SIGNATURE=signature,
                **extra,
            )

        assert post(HTTP_IDEMPOTENCY_KEY="k-1").status_code == 200
        assert post(HTTP_IDEMPOTENCY_KEY="k-2").status_code == 401
        assert post().status_code == 401
        assert Position.objects.count() == 1

    @pytest.mark.parametrize("signature", ["sha256=\u00e9", "sha256=\u00e9" * 40, "\u00ff", "sha256=00"])
    def test_a_malformed_signature_is_401_not_500(self, anon_client, signal_body, signature):
        raw = json.dumps(signal_body()).encode()
        response = anon_client.post(
            "/signals/bounce",
            data=raw,
            content_type="application/json",
            HTTP_X_TIMESTAMP=str(int(time.time())),
            HTTP_X_SIGNATURE=signature,
        )
        assert response.status_code == 401 and Position.objects.count() == 0

    def test_a_valid_signature_is_accepted_without_a_token(self, anon_client, signal_body):
        response = self.signed_post(anon_client, signal_body())
        assert response.status_code == 200 and response.json()["risk_ok"] is True

    def test_a_wrong_signature_is_401(self, anon_client, signal_body):
        assert self.signed_post(anon_client, signal_body(), secret="wrong").status_code == 401

    def test_an_old_timestamp_is_a_replay_and_401(self, anon_client, signal_body):
        assert self.signed_post(anon_client, signal_body(), ts=int(time.time()) - 3600).status_code == 401

    def test_a_token_alone_is_not_enough_when_signing_is_on(self, bot_client, signal_body):
        response = bot_client.post("/signals/bounce", data=signal_body(), format="json")
        assert response.status_code == 401 and Position.objects.count() == 0

    def test_a_tampered_body_is_401(self, anon_client, signal_body):
        raw = json.dumps(signal_body()).encode()
        ts = str(int(time.time()))
        response = anon_client.post(
            "/signals/bounce",
            data=raw.replace(b"100.0", b"1.0"),
            content_type="application/json",
            HTTP_X_TIMESTAMP=ts,
            HTTP_X_SIGNATURE=sign_body(self.SECRET, ts, raw),
        )
        assert response.status_code == 401


@pytest.mark.parametrize("role", ["bot", "viewer"])
def test_dev_open_access_never_lifts_an_authenticated_caller_above_its_role(role, settings):
    """API_ALLOW_ANONYMOUS opens the API to anonymous scripts; a token still answers for its role."""
    assert settings.API_ALLOW_ANONYMOUS is True  # the dev default
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(make_user('dev-' + role, role))}")
    position = open_position()
    assert client.post("/positions/close-all", {"confirm": "CLOSE ALL"}, format="json").status_code == 403
    assert client.post(f"/positions/{position.pk}/close").status_code == 403
    assert client.post("/oms/switch", {"enabled": False, "reason": "r"}, format="json").status_code == 403
    assert client.get("/positions").status_code == 200
    assert Position.objects.get().status == PositionStatus.OPEN and OmsControl.load().enabled


def test_a_signature_in_upper_case_hex_is_the_same_signature(anon_client, settings, signal_body):
    settings.SIGNAL_HMAC_SECRET = "s3cret-for-case"
    raw = json.dumps(signal_body()).encode()
    stamp = str(int(time.time()))
    upper = "sha256=" + sign_body(settings.SIGNAL_HMAC_SECRET, stamp, raw).removeprefix("sha256=").upper()
    response = anon_client.post(
        "/signals/bounce", data=raw, content_type="application/json", HTTP_X_TIMESTAMP=stamp, HTTP_X_SIGNATURE=upper
    )
    assert response.status_code == 200


def test_the_one_query_permission_backend_answers_as_djangos_model_backend():
    from django.contrib.auth.backends import ModelBackend as DjangoModelBackend
    from django.contrib.auth.models import Permission

    from lomsite.permissions import ModelBackend

    trade = Permission.objects.get(content_type__app_label="oms", codename="trade")
    direct = User.objects.create_user("direct")
    direct.user_permissions.add(trade)
    grouped = User.objects.create_user("grouped")
    group = Group.objects.create(name="traders-test")
    group.permissions.add(trade)
    grouped.groups.add(group)
    other_app = User.objects.create_user("other-app")  # the codename "view_user" exists only in auth
    other_app.user_permissions.add(Permission.objects.get(content_type__app_label="auth", codename="view_user"))
    nobody = User.objects.create_user("nobody")
    inactive = User.objects.create_user("inactive", is_active=False)
    inactive.user_permissions.add(trade)
    boss = User.objects.create_superuser("boss")
    users = [direct, grouped, other_app, nobody, inactive, boss]
    for perm in ("oms.trade", "oms.view_user", "auth.view_user", "oms.change_switch"):
        ours = {user.username: ModelBackend().has_perm(User.objects.get(pk=user.pk), perm) for user in users}
        django = {user.username: DjangoModelBackend().has_perm(User.objects.get(pk=user.pk), perm) for user in users}
        assert ours == django, perm
        del ours["boss"]  # User.has_perm answers yes to an active superuser before asking any backend
        assert ours == {user.username: User.objects.get(pk=user.pk).has_perm(perm) for user in users[:-1]}, perm
    assert ModelBackend().has_perm(direct, "oms.trade") and ModelBackend().has_perm(grouped, "oms.trade")
    assert not ModelBackend().has_perm(nobody, "oms.trade") and not ModelBackend().has_perm(other_app, "oms.view_user")
    fresh = User.objects.get(pk=grouped.pk)
    with CaptureQueriesContext(connection) as queries:
        assert fresh.has_perm("oms.trade") and not fresh.has_perm("oms.change_switch")
    assert len(queries) == 1  # one query for the user's own and its groups' permissions, then kept
