"""Alerts through apprise, against a loopback webhook (`json://127.0.0.1:<port>/…`): never the internet."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from oms import tasks
from oms.checks import notify_urls_check
from oms.models import AutoCloseMonitor, HealthReasonSeen, Notification, NotificationStatus, Position
from oms.services import notify as notify_service
from oms.services.health import health_report
from oms.services.notify import (
    daily_summary_check,
    health_reasons_check,
    notification_deliver,
    notifications_retry_due,
    notify,
    notify_reconciliation_mismatch,
    notify_tick,
)
from oms.services.switch import oms_switch_set
from oms.services.trips import TRIP_ACTOR
from oms.tests.factories import closed_position

pytestmark = pytest.mark.django_db


class Hook:
    """A loopback HTTP server that records every POST and answers with `status`."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                hook.posts.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"


@pytest.fixture
def hook(settings):
    server = Hook()
    settings.NOTIFY_URLS = server.url
    settings.BACKUP_DIR = settings.BASE_DIR / "data" / "no-backups-here"
    yield server
    server.server.shutdown()
    server.server.server_close()


def send_queued() -> list[str]:
    """What the cluster would do: run each queued notification_send task."""
    later = timezone.now() + timedelta(days=3650)  # some were recorded with a `now` in the future
    return [
        notification_deliver(n.pk, now=later)
        for n in Notification.objects.filter(status=NotificationStatus.PENDING).order_by("id")
    ]


def test_notify_records_then_enqueues_after_commit_and_the_task_sends_the_content(
    hook, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        notification = notify("test", "Disk almost full", "93 % used", dedupe_key="disk")
        assert hook.posts == [] and OrmQ.objects.count() == 0  # nothing sent or queued inside the transaction
    assert len(callbacks) == 1 and OrmQ.objects.count() == 1
    assert notification.status == NotificationStatus.PENDING and hook.posts == []
    assert tasks.notification_send(notification.pk) == NotificationStatus.SENT
    [post] = hook.posts
    assert post["title"] == "Disk almost full" and post["message"] == "93 % used" and post["type"] == "warning"
    notification.refresh_from_db()
    assert (notification.status, notification.attempts, notification.error) == ("sent", 1, "")
    assert notification.sent_at is not None
    assert tasks.notification_send(notification.pk) == "sent" and len(hook.posts) == 1  # never twice


def test_a_failed_send_is_retried_later_then_sent_and_the_error_hides_the_url_secrets(settings, hook):
    settings.NOTIFY_URLS = f"json://loms:hunter2-secret@127.0.0.1:{hook.port}/hook"
    hook.status = 500
    notification = notify("test", "t", "b", dedupe_key="k")
    assert notification_deliver(notification.pk) == NotificationStatus.PENDING
    notification.refresh_from_db()
    assert notification.attempts == 1 and notification.error and "hunter2-secret" not in notification.error
    assert notification.next_attempt_at > timezone.now()
    assert notifications_retry_due() == 0 and len(hook.posts) == 1  # not due yet
    hook.status = 200
    assert notifications_retry_due(now=notification.next_attempt_at + timedelta(seconds=1)) == 1
    notification.refresh_from_db()
    assert (notification.status, notification.attempts, notification.error) == ("sent", 2, "")
    assert len(hook.posts) == 2


def test_it_gives_up_after_notify_max_attempts(settings, hook):
    settings.NOTIFY_MAX_ATTEMPTS = 2
    hook.status = 503
    notification = notify("test", "t", "b")
    notification_deliver(notification.pk)
    Notification.objects.filter(pk=notification.pk).update(next_attempt_at=timezone.now())
    assert notification_deliver(notification.pk) == NotificationStatus.FAILED
    assert len(hook.posts) == 2


def test_a_sender_killed_mid_send_is_retried_by_the_tick(hook):
    notification = notify("test", "t", "b")
    Notification.objects.filter(pk=notification.pk).update(
        status=NotificationStatus.SENDING, updated_at=timezone.now() - timedelta(minutes=6)
    )
    assert notifications_retry_due() == 1
    assert Notification.objects.get(pk=notification.pk).status == "sent" and len(hook.posts) == 1


def test_the_same_alert_is_sent_at_most_once_per_notify_repeat_min(settings, hook):
    settings.NOTIFY_REPEAT_MIN = 30
    now = timezone.now()
    first = notify("health", "stale", dedupe_key="health:loop_stale", now=now)
    second = notify("health", "stale", dedupe_key="health:loop_stale", now=now + timedelta(minutes=5))
    third = notify("health", "stale", dedupe_key="health:loop_stale", now=now + timedelta(minutes=10))
    assert first.status == "pending" and second.status == "suppressed" and third.pk == second.pk
    assert third.suppressed_count == 2
    other = notify("health", "other", dedupe_key="health:audit_not_writable", now=now + timedelta(minutes=10))
    assert other.status == "pending"
    later = notify("health", "stale", dedupe_key="health:loop_stale", now=now + timedelta(minutes=31))
    assert later.status == "pending"
    send_queued()
    assert [p["title"] for p in hook.posts].count("stale") == 2


def test_without_notify_urls_alerts_are_recorded_but_not_sent(settings, django_capture_on_commit_callbacks):
    settings.NOTIFY_URLS = ""
    with django_capture_on_commit_callbacks(execute=True):
        notification = notify("test", "t", "b")
    assert notification.status == NotificationStatus.UNCONFIGURED and OrmQ.objects.count() == 0


def test_every_switch_change_is_an_alert_sent_outside_the_request(
    strict_api, operator_client, hook, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post("/oms/switch", data={"enabled": False, "reason": "CPI at 14:30"}, format="json")
    assert response.status_code == 200 and hook.posts == []  # the request only recorded and queued it
    with django_capture_on_commit_callbacks(execute=True):
        oms_switch_set(enabled=False, actor="olga", reason="CPI at 14:30")  # the same change again: still sent
        oms_switch_set(enabled=False, actor=TRIP_ACTOR, reason="automatic trip: daily loss 120 >= 100")
    send_queued()
    assert [p["title"] for p in hook.posts] == ["LOMS switch OFF"] * 3
    assert "olga" in hook.posts[0]["message"] and "CPI at 14:30" in hook.posts[0]["message"]
    assert "automatic trip" in hook.posts[2]["message"] and "daily loss 120" in hook.posts[2]["message"]
    assert hook.posts[0]["type"] == "failure"


def test_a_broken_notification_never_blocks_the_kill_switch(hook, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("notification table missing")

    monkeypatch.setattr(Notification.objects, "create", broken)
    state = oms_switch_set(enabled=False, actor="olga", reason="panic")
    assert state.switch_on is False
    from oms.models import OmsControl, OmsSwitchChange

    assert OmsControl.load().enabled is False and OmsSwitchChange.objects.count() == 1


def test_a_reconciliation_mismatch_is_an_alert(hook):
    notify_reconciliation_mismatch(account="bybit-main", mismatches=["BTCUSDT: book 1.0, exchange 0.5"])
    again = notify_reconciliation_mismatch(account="bybit-main", mismatches=["BTCUSDT: book 1.0, exchange 0.5"])
    assert again.status == "suppressed"
    send_queued()
    [post] = hook.posts
    assert "bybit-main" in post["title"] and "BTCUSDT: book 1.0, exchange 0.5" in post["message"]


def test_a_failed_scheduled_backup_is_an_alert_and_still_fails(hook, monkeypatch):
    from ops import backups

    def broken():
        raise backups.BackupError("disk full")

    monkeypatch.setattr(backups, "_backup_scheduled", broken)
    with pytest.raises(backups.BackupError):
        backups.backup_scheduled()
    send_queued()
    [post] = hook.posts
    assert post["title"] == "LOMS backup failed" and "disk full" in post["message"]


def test_a_health_reason_alerts_only_when_it_lasts_then_says_when_it_cleared(settings, hook):
    settings.NOTIFY_DEGRADED_AFTER_SEC = 300
    settings.NOTIFY_REPEAT_MIN = 60
    now = timezone.now()
    AutoCloseMonitor.objects.update_or_create(pk=1, defaults={"last_sweep_at": None})
    assert health_reasons_check(now=now) == []
    assert health_reasons_check(now=now + timedelta(seconds=299)) == []
    [alert] = health_reasons_check(now=now + timedelta(seconds=300))
    assert alert.dedupe_key == "health:loop_stale" and alert.status == "pending"
    assert health_reasons_check(now=now + timedelta(seconds=360)) == []  # suppressed within the hour
    AutoCloseMonitor.objects.filter(pk=1).update(last_sweep_at=timezone.now())
    [recovered] = health_reasons_check(now=now + timedelta(seconds=420))
    assert recovered.title == "LOMS recovered: loop_stale" and not HealthReasonSeen.objects.exists()
    send_queued()
    assert [p["title"] for p in hook.posts] == [
        "LOMS degraded: auto-close is not sweeping: no sweep has run yet (limit 30 s)",
        "LOMS recovered: loop_stale",
    ]
    assert hook.posts[1]["type"] == "success"


def test_a_reason_that_clears_before_it_lasts_never_alerts(settings, hook):
    now = timezone.now()
    AutoCloseMonitor.objects.update_or_create(pk=1, defaults={"last_sweep_at": None})
    health_reasons_check(now=now)
    AutoCloseMonitor.objects.filter(pk=1).update(last_sweep_at=timezone.now())
    assert health_reasons_check(now=now + timedelta(seconds=60)) == []
    assert not Notification.objects.exists()


def test_the_daily_summary_is_sent_once_after_notify_daily_at_with_the_figures_and_the_verdict(settings, hook):
    settings.NOTIFY_DAILY_AT = "00:05"
    day = datetime(2026, 3, 10, tzinfo=UTC)
    closed_position(pnl="12.5", closed_at=day + timedelta(hours=3), reason="tp")
    closed_position(pnl="-2.5", closed_at=day + timedelta(hours=4), reason="sl")
    closed_position(pnl="100", closed_at=day - timedelta(hours=4), reason="tp")  # the day before: not counted
    assert daily_summary_check(now=day + timedelta(days=1, minutes=4)) is None  # 00:04: not yet
    summary = daily_summary_check(now=day + timedelta(days=1, minutes=5))
    assert summary.dedupe_key == "daily:2026-03-10"
    assert daily_summary_check(now=day + timedelta(days=1, hours=5)) is None  # once per day
    send_queued()
    [post] = hook.posts
    assert post["title"] == "LOMS daily summary 2026-03-10: PnL 10.00 USDT, NO-GO"
    assert "closed: 2 (TP 1, SL 1" in post["message"] and "winrate 50.0%" in post["message"]
    assert "Shadow verdict (all closed trades): NO-GO" in post["message"] and "min_trades" in post["message"]
    assert "PnL: 10.00 USDT" in post["message"] and Position.objects.count() == 3


def test_the_tick_runs_each_part_even_when_one_fails(hook, monkeypatch):
    monkeypatch.setattr(notify_service, "health_reasons_check", lambda now: 1 / 0)
    result = notify_tick()
    assert result["retried"] == 0 and "ZeroDivisionError" in result["health_alerts"] and "daily_summary" in result


def test_the_migration_creates_the_one_minute_tick_schedule():
    schedule = Schedule.objects.get(name="oms.notify_tick")
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "oms.tasks.notify_tick",
        "I",
        1,
        -1,
    )
    assert callable(tasks.notify_tick)


# --- manage.py notify_test -------------------------------------------------------------------------


def run_notify_test(*argv: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("notify_test", *argv, stdout=out)
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


def test_notify_test_sends_and_exits_0(hook):
    code, out = run_notify_test("--message", "hello from the test")
    assert code == 0 and "Sent notification" in out
    [post] = hook.posts
    assert post["title"] == "LOMS test notification" and post["message"] == "hello from the test"
    assert Notification.objects.get().status == "sent"


def test_notify_test_exits_1_when_the_target_fails_and_2_without_urls(settings, hook):
    hook.status = 500
    code, out = run_notify_test()
    assert code == 1 and "was not sent" in out
    settings.NOTIFY_URLS = ""
    assert run_notify_test()[0] == 2


def test_one_bad_notify_url_never_silences_the_good_ones_and_health_names_it(settings, hook):
    settings.NOTIFY_URLS = f"{hook.url}, tgram://bad"
    code, out = run_notify_test("--message", "still delivered")
    assert code == 0 and [post["message"] for post in hook.posts] == ["still delivered"]
    reasons = {reason["code"]: reason for reason in health_report()["reasons"]}
    assert reasons["alerts_misconfigured"]["detail"] == "entries #2" and "tgram" not in str(reasons)
    assert [warning.id for warning in notify_urls_check(None)] == ["oms.W002"]


def test_health_says_so_when_the_last_alert_could_not_be_sent(settings, hook):
    hook.status = 500
    assert run_notify_test()[0] == 1
    assert "alerts_failing" in [reason["code"] for reason in health_report()["reasons"]]
    hook.status = 200
    assert run_notify_test()[0] == 0
    assert "alerts_failing" not in [reason["code"] for reason in health_report()["reasons"]]


def test_notify_test_queue_leaves_the_sending_to_the_cluster(hook):
    code, out = run_notify_test("--queue")
    assert code == 0 and "Queued" in out and hook.posts == []


# --- the console's notification log ------------------------------------------------------------------


def test_a_viewer_reads_the_notification_log_and_an_anonymous_visitor_is_sent_to_login(client, viewer, settings):
    settings.NOTIFY_URLS = ""
    notify("switch", "LOMS switch OFF", "by alice")
    notify("switch", "LOMS switch OFF", "by alice")  # suppressed
    assert client.get("/console/notifications").status_code == 302
    client.force_login(viewer)
    page = client.get("/console/notifications")
    assert page.status_code == 200
    text = page.content.decode()
    assert "LOMS switch OFF" in text and "unconfigured" in text and "suppressed" in text
    assert "NOTIFY_URLS is empty" in text
    only = client.get("/console/notifications?status=suppressed").content.decode()
    assert "suppressed" in only and ">unconfigured<" not in only


@pytest.mark.django_db(transaction=True)
def test_the_same_alert_raised_by_ten_threads_at_once_is_sent_once(settings):
    from django.db import connection

    settings.NOTIFY_URLS = "json://127.0.0.1:9/never-reached"
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def raise_alert():
        try:
            barrier.wait()
            notify("health", "stale", dedupe_key="health:loop_stale")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=raise_alert) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = list(Notification.objects.values_list("status", "suppressed_count"))
    assert sorted(rows) == [("pending", 0), ("suppressed", 9)]
