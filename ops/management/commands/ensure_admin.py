import secrets

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "On a database without any superuser, create one (default name 'admin') with a random "
        "one-time password and print it. Does nothing when a superuser exists."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin", help="the admin account to create (default: admin)")

    def handle(self, *args, username, **options):
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("A superuser exists already; log in with it (or `manage.py changepassword`).")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, password=password, email="")
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the first admin user.\n  username: {username}\n  password: {password}\n"
                "  (shown once: change it after logging in)"
            )
        )
