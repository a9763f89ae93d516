"""Alerts that reach a phone: every notification is recorded, then sent by django-q through apprise.

- `notify(kind, title, body, dedupe_key)` records a `Notification` and enqueues its sending after
  the current transaction commits. It never sends in the caller's thread, so a request, a switch
  change or a backup never waits for (or fails because of) Telegram, Discord or an SMTP server.
- The same `dedupe_key` is sent at most once per `NOTIFY_REPEAT_MIN`; a repeat inside that window
  is recorded once as `suppressed` and further repeats only bump its `suppressed_count`.
- `notification_deliver(pk)` claims the row with a conditional update (so a queued task and the
  minute tick never send it twice), sends it, and on failure schedules a retry with a growing
  delay until `NOTIFY_MAX_ATTEMPTS`, then marks it `failed`. The error never contains a URL token.
- `notify_tick()` (the one-minute django-q schedule created by migration 0010) retries due
  notifications, alerts on a health reason lasting `NOTIFY_DEGRADED_AFTER_SEC` and sends the
  daily summary at `NOTIFY_DAILY_AT` (UTC).

Without `NOTIFY_URLS` nothing is sent; the notifications are still recorded as `unconfigured`.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.models import HealthReasonSeen, Notification, NotificationStatus

logger = logging.getLogger("loms.notify")

SENDING_STUCK_AFTER = timedelta(minutes=5)  # a sender killed mid-send: the row is retried after this
RETRY_MAX_DELAY = timedelta(minutes=30)
LEVELS = ("info", "success", "warning", "failure")


def _active_in_window(key: str, now: datetime):
    since = now - timedelta(minutes=settings.NOTIFY_REPEAT_MIN)
    return Notification.objects.filter(dedupe_key=key, created_at__gte=since)


def _lock_key(key: str) -> None:
    """Serialise notify() calls for one dedupe key until the end of the transaction, so two alerts
    raised at the same instant are sent once. SQLite: BEGIN IMMEDIATE already holds the write lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ["loms.notify:" + key])


def notify(
    kind: str,
    title: str,
    body: str = "",
    dedupe_key: str | None = None,
    *,
    level: str = "warning",
    now: datetime | None = None,
) -> Notification:
    """Record an alert and enqueue its sending (after commit). Returns the recorded row, which is
    `suppressed` when the same `dedupe_key` (default: kind + title) was sent within NOTIFY_REPEAT_MIN."""
    now = now or timezone.now()
    key = (dedupe_key or f"{kind}:{title}")[:200]
    level = level if level in LEVELS else "warning"
    fields = {
        "kind": kind[:32],
        "dedupe_key": key,
        "title": title[:250],
        "body": body,
        "level": level,
        "created_at": now,
        "updated_at": now,
    }
    with transaction.atomic():
        _lock_key(key)
        recent = _active_in_window(key, now)
        if recent.exclude(status__in=[NotificationStatus.SUPPRESSED, NotificationStatus.FAILED]).exists():
            folded = recent.filter(status=NotificationStatus.SUPPRESSED).order_by("-created_at", "-id").first()
            if folded:
                Notification.objects.filter(pk=folded.pk).update(
                    suppressed_count=F("suppressed_count") + 1, updated_at=now
                )
                folded.refresh_from_db()
                return folded
            return Notification.objects.create(**fields, status=NotificationStatus.SUPPRESSED, suppressed_count=1)
        if not settings.NOTIFY_URLS.strip():
            notification = Notification.objects.create(**fields, status=NotificationStatus.UNCONFIGURED)
            log_event(logger, "notification_unconfigured", kind=kind, title=title)
            return notification
        notification = Notification.objects.create(**fields, status=NotificationStatus.PENDING, next_attempt_at=now)
        transaction.on_commit(lambda: notification_enqueue(notification.pk))
    return notification


def notification_enqueue(pk: int) -> None:
    """Hand the sending to django-q. A failure here is only logged: the minute tick retries the row."""
    try:
        from django_q.tasks import async_task

        async_task("oms.tasks.notification_send", pk, task_name=f"notify-{pk}")
    except Exception as exc:  # never break the caller because the queue is unavailable
        log_event(logger, "notification_enqueue_failed", logging.ERROR, id=pk, error=f"{type(exc).__name__}: {exc}")


def _secret_parts(urls: str) -> list[str]:
    """Every piece of the configured URLs that may be a token or password, longest first."""
    parts = set()
    for url in re.split(r"[\s,]+", urls):
        rest = url.partition("://")[2]
        parts.update(piece for piece in re.split(r"[/:@?&=#]+", rest) if len(piece) >= 4)
    return sorted(parts, key=len, reverse=True)


def scrub(text: str, urls: str | None = None) -> str:
    for part in _secret_parts(settings.NOTIFY_URLS if urls is None else urls):
        text = text.replace(part, "***")
    return text


def notify_url_entries(urls: str | None = None) -> list[str]:
    urls = settings.NOTIFY_URLS if urls is None else urls
    return [url for url in re.split(r"[\s,]+", urls) if url]


def notify_url_problems(urls: str | None = None) -> list[int]:
    """The positions (1-based) of the NOTIFY_URLS entries apprise does not understand. Never the
    entries themselves: they hold tokens and passwords."""
    import apprise

    return [number for number, url in enumerate(notify_url_entries(urls), start=1) if not apprise.Apprise().add(url)]


def apprise_send(*, title: str, body: str, level: str = "warning", urls: str | None = None) -> tuple[bool, str]:
    """Send through apprise to every valid NOTIFY_URLS target (an entry apprise does not understand
    never silences the others; /health names it). Returns (ok, error without secrets)."""
    import apprise

    urls = settings.NOTIFY_URLS if urls is None else urls
    sender = apprise.Apprise()
    for url in notify_url_entries(urls):
        sender.add(url)
    if not len(sender):
        return False, "NOTIFY_URLS holds no valid apprise URL"
    with apprise.LogCapture(level=logging.WARNING) as captured:
        try:
            ok = sender.notify(title=title, body=body or title, notify_type=apprise.NotifyType(level))
        except Exception as exc:
            ok, captured_error = False, f"{type(exc).__name__}: {exc}"
        else:
            captured_error = ""
        text = captured.getvalue().strip()
    error = "" if ok else (captured_error or text or "apprise reported a failure")
    return bool(ok), scrub(error, urls)[:2000]


def retry_delay(attempts: int) -> timedelta:
    """1, 2, 4, 8 … minutes after the n-th failed attempt, at most RETRY_MAX_DELAY."""
    return min(timedelta(minutes=2 ** max(attempts - 1, 0)), RETRY_MAX_DELAY)


def notification_deliver(pk: int, *, now: datetime | None = None) -> str:
    """Send one pending notification if it is due; returns its status afterwards."""
    now = now or timezone.now()
    claimed = Notification.objects.filter(pk=pk, status=NotificationStatus.PENDING, next_attempt_at__lte=now).update(
        status=NotificationStatus.SENDING, attempts=F("attempts") + 1, updated_at=now
    )
    if not claimed:
        row = Notification.objects.filter(pk=pk).values_list("status", flat=True).first()
        return row or "missing"
    notification = Notification.objects.get(pk=pk)
    ok, error = apprise_send(title=notification.title, body=notification.body, level=notification.level)
    done = timezone.now()
    if ok:
        notification.status, notification.sent_at, notification.next_attempt_at = NotificationStatus.SENT, done, None
        notification.error = ""
        log_event(logger, "notification_sent", id=pk, kind=notification.kind, attempts=notification.attempts)
    elif notification.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
        notification.status, notification.next_attempt_at, notification.error = NotificationStatus.FAILED, None, error
        log_event(
            logger,
            "notification_failed",
            logging.ERROR,
            id=pk,
            kind=notification.kind,
            attempts=notification.attempts,
            error=error,
        )
    else:
        notification.status, notification.error = NotificationStatus.PENDING, error
        notification.next_attempt_at = done + retry_delay(notification.attempts)
        log_event(
            logger,
            "notification_retry",
            logging.WARNING,
            id=pk,
            kind=notification.kind,
            attempts=notification.attempts,
            error=error,
        )
    notification.updated_at = done
    notification.save(update_fields=["status", "sent_at", "next_attempt_at", "error", "updated_at"])
    return notification.status


def notifications_retry_due(*, now: datetime | None = None, limit: int = 10) -> int:
    """Send the pending notifications that are due (retries, and any whose enqueue was lost). At most
    `limit` per call, so a tick stays well inside the django-q task timeout when targets hang."""
    now = now or timezone.now()
    Notification.objects.filter(status=NotificationStatus.SENDING, updated_at__lt=now - SENDING_STUCK_AFTER).update(
        status=NotificationStatus.PENDING, next_attempt_at=now, updated_at=now
    )
    due = list(
        Notification.objects.filter(status=NotificationStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in due:
        notification_deliver(pk, now=now)
    return len(due)


# --- what is worth an alert ------------------------------------------------------------------------


def notify_safely(*args, **kwargs) -> Notification | None:
    """`notify`, but a failure is only logged: an alert must never block the kill switch or hide the
    error of a failed backup. (`notify` runs in a savepoint, so the caller's transaction goes on.)"""
    try:
        return notify(*args, **kwargs)
    except Exception as exc:
        log_event(
            logger,
            "notification_record_failed",
            logging.ERROR,
            kind=args[0] if args else kwargs.get("kind"),
            error=f"{type(exc).__name__}: {exc}",
        )
        return None


def notify_switch_change(*, enabled: bool, actor: str, reason: str, source: str, change_id: int | None) -> None:
    """Every change of the OMS switch: who, why, or the trip that did it (called inside its transaction)."""
    from oms.services.trips import TRIP_ACTOR

    word = "ON" if enabled else "OFF"
    who = "an automatic trip" if actor == TRIP_ACTOR else (actor or "unknown")
    notify_safely(
        "switch",
        f"LOMS switch {word}",
        f"The OMS switch was turned {word} by {who} ({source}).\nWhy: {reason}",
        dedupe_key=f"switch:{change_id}" if change_id else None,
        level="success" if enabled else "failure",
    )


def notify_strategy_change(
    *, strategy: str, changes: dict[str, str], actor: str, reason: str, source: str, change_key: str
) -> None:
    """A strategy's switch or limits changed (called inside its transaction): who, what, why."""
    what = "; ".join(f"{field}: {change}" for field, change in changes.items())
    notify_safely(
        "strategy",
        f"LOMS strategy {strategy} changed",
        f"Strategy {strategy} was changed by {actor or 'unknown'} ({source}): {what}.\nWhy: {reason}",
        dedupe_key=f"strategy:{strategy}:{change_key}",
        level="warning",
    )


def notify_reconciliation_mismatch(
    *,
    account: str,
    mismatches: list[str] | str,
    dedupe_key: str | None = None,
) -> Notification:
    """A broker reconciliation found differences between the book and the exchange (for the live broker)."""
    lines = [mismatches] if isinstance(mismatches, str) else list(mismatches)
    body = f"Reconciliation of {account} found {len(lines)} mismatch(es):\n" + "\n".join(f"- {m}" for m in lines)
    return notify(
        "reconciliation",
        f"LOMS reconciliation mismatch ({account})",
        body,
        dedupe_key=dedupe_key or f"reconciliation:{account}:{'|'.join(sorted(lines))}"[:200],
        level="failure",
    )


def notify_backup_failed(error: str) -> Notification | None:
    return notify_safely(
        "backup",
        "LOMS backup failed",
        f"The scheduled backup failed: {error}",
        dedupe_key="backup:failed",
        level="failure",
    )


def health_reasons_check(*, now: datetime | None = None) -> list[Notification]:
    """Track since when each health reason holds; alert on those lasting NOTIFY_DEGRADED_AFTER_SEC
    (then at most once per NOTIFY_REPEAT_MIN), and say when an alerted reason has cleared."""
    from oms.services.health import current_reasons

    now = now or timezone.now()
    reasons = {reason.code: reason for reason in current_reasons()}
    sent: list[Notification] = []
    for seen in HealthReasonSeen.objects.exclude(code__in=reasons):
        if seen.notified_at:
            sent.append(
                notify(
                    "health",
                    f"LOMS recovered: {seen.code}",
                    f"Cleared: {seen.message}",
                    dedupe_key=f"health-recovered:{seen.code}:{seen.first_seen_at.isoformat()}",
                    level="success",
                    now=now,
                )
            )
        seen.delete()
    lasting = timedelta(seconds=settings.NOTIFY_DEGRADED_AFTER_SEC)
    for code, reason in reasons.items():
        seen, _ = HealthReasonSeen.objects.get_or_create(
            code=code, defaults={"message": reason.message[:500], "first_seen_at": now, "last_seen_at": now}
        )
        seen.last_seen_at, seen.message = now, reason.message[:500]
        if now - seen.first_seen_at >= lasting:
            minutes = (now - seen.first_seen_at).total_seconds() / 60
            body = f"{reason.message}\nFor {minutes:.0f} min.\n{reason.detail}".strip()
            notification = notify(
                "health", f"LOMS degraded: {reason.message}"[:250], body, dedupe_key=f"health:{code}", now=now
            )
            if notification.status != NotificationStatus.SUPPRESSED:
                seen.notified_at = now
                sent.append(notification)
        seen.save()
    return sent


def _money(value) -> str:
    return f"{Decimal(value or 0).quantize(Decimal('0.01')):f}"


def daily_summary_text(day: date) -> tuple[str, str]:
    """The title and body of the summary of one UTC day: its figures and the shadow verdict."""
    from oms.models import Position, Signal
    from oms.services.shadow import shadow_report

    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    metrics = shadow_report(since=start, until=end, now=end)["metrics"]
    overall = shadow_report(now=end)
    signals = Signal.objects.filter(received_at__gte=start, received_at__lt=end)
    opened = Position.objects.filter(created_at__gte=start, created_at__lt=end).count()
    still_open = Position.objects.open().count()
    counts = {row["outcome"]: row["n"] for row in signals.values("outcome").annotate(n=Count("id"))}
    winrate = f"{metrics['winrate_pct']}%" if metrics["winrate_pct"] is not None else "-"
    lines = [
        f"Signals: {sum(counts.values())} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'none'})",
        f"Positions opened: {opened}; closed: {metrics['closed_trades']} "
        f"(TP {metrics['tp_count']}, SL {metrics['sl_count']}, other {metrics['other_exit_count']}); open now: "
        f"{still_open}",
        f"PnL: {_money(metrics['total_pnl'])} USDT; winrate {winrate}; max drawdown "
        f"{_money(metrics['max_drawdown'])} USDT",
        f"Shadow verdict (all closed trades): {overall['verdict']}"
        + (f" — failing: {', '.join(overall['failed'])}" if overall["failed"] else ""),
    ]
    return (
        f"LOMS daily summary {day.isoformat()}: PnL {_money(metrics['total_pnl'])} USDT, {overall['verdict']}",
        "\n".join(lines),
    )


def daily_summary_check(*, now: datetime | None = None) -> Notification | None:
    """Once NOTIFY_DAILY_AT (UTC) has passed, send the summary of the previous UTC day, once."""
    now = (now or timezone.now()).astimezone(UTC)
    hour, minute = (int(part) for part in settings.NOTIFY_DAILY_AT.split(":"))
    if now < now.replace(hour=hour, minute=minute, second=0, microsecond=0):
        return None
    day = now.date() - timedelta(days=1)
    key = f"daily:{day.isoformat()}"
    if Notification.objects.filter(dedupe_key=key).exists():
        return None
    title, body = daily_summary_text(day)
    return notify("daily_summary", title, body, dedupe_key=key, level="info", now=now)


def notify_tick(*, now: datetime | None = None) -> dict:
    """The one-minute schedule: the audit spool written once the trail can be written again (not
    only when the next signal comes), retries, lasting health reasons, the daily summary. Each
    part runs even when another fails."""
    from oms.services.audit import audit_spool_flush

    now = now or timezone.now()
    result: dict = {}
    for name, step in (
        ("audit_spool_written", audit_spool_flush),
        ("retried", lambda: notifications_retry_due(now=now)),
        ("health_alerts", lambda: len(health_reasons_check(now=now))),
        ("daily_summary", lambda: bool(daily_summary_check(now=now))),
    ):
        try:
            result[name] = step()
        except Exception as exc:
            logger.exception("notify tick step %s failed", name)
            result[name] = f"error: {type(exc).__name__}: {exc}"
    return result
