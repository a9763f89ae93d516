from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from oms.models import NotificationStatus
from oms.services.notify import notification_deliver, notify


class Command(BaseCommand):
    help = (
        "Send a test notification to every NOTIFY_URLS target (apprise: Telegram, Discord, e-mail, a "
        "webhook…) and say whether it arrived. It is recorded in the console's notification log like any "
        "alert. By default it is sent right here so you see the result; --queue hands it to the django-q "
        "cluster instead (proves the workers send too). Exit code 0 sent (or queued), 1 failed, "
        "2 NOTIFY_URLS is empty."
    )

    def add_arguments(self, parser):
        parser.add_argument("--message", default="", help="text of the test notification (default: a timestamp)")
        parser.add_argument("--queue", action="store_true", help="enqueue for the cluster instead of sending here")

    def handle(self, *args, message: str, queue: bool, **options):
        if not settings.NOTIFY_URLS.strip():
            self.stdout.write(self.style.ERROR("NOTIFY_URLS is empty: nothing to send to (see .env.sample)."))
            raise SystemExit(2)
        now = timezone.now()
        body = message or f"Test notification from LOMS ({settings.ENVIRONMENT}) at {now:%Y-%m-%d %H:%M:%S} UTC."
        notification = notify(
            "test", "LOMS test notification", body, dedupe_key=f"test:{now.isoformat()}", level="info", now=now
        )
        if queue:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Queued notification #{notification.pk}; the cluster sends it "
                    "(see the console's notification log)."
                )
            )
            return
        status = notification_deliver(notification.pk, now=now)
        notification.refresh_from_db()
        if status == NotificationStatus.SENT:
            self.stdout.write(self.style.SUCCESS(f"Sent notification #{notification.pk} to every NOTIFY_URLS target."))
            return
        self.stdout.write(
            self.style.ERROR(f"Notification #{notification.pk} was not sent ({status}): {notification.error or '-'}")
        )
        if status == NotificationStatus.PENDING:
            self.stdout.write("It stays queued: the cluster retries it (NOTIFY_MAX_ATTEMPTS).")
        raise SystemExit(1)
