import getpass
import secrets
import sys

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from oms.models import OperatorSource
from oms.services.operator_audit import command_actor, operator_action_record

ROLES = ("viewer", "operator")


class Command(BaseCommand):
    help = (
        "Give a console user one role: viewer (read-only pages) or operator (close, close all, switch). "
        "The other console role is removed. With --create, a missing user is created with a prompted "
        "password, or a random one printed once (--random-password)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", help="the account to change")
        parser.add_argument("role", choices=ROLES, help="its new role")
        parser.add_argument("--create", action="store_true", help="create the user if it does not exist")
        parser.add_argument(
            "--random-password",
            action="store_true",
            help="with --create: generate a password and print it once instead of prompting",
        )
        parser.add_argument("--staff", action="store_true", help="also allow the Django admin (is_staff)")
        parser.add_argument("--actor", default=None, help="who is changing it (default: the OS user)")
        parser.add_argument("--reason", default="", help="why (recorded in the operator audit)")

    def handle(self, *args, username, role, create, random_password, staff, actor=None, reason="", **options):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        password = None
        if user is None:
            if not create:
                raise CommandError(f"No user {username!r}; add --create to create it.")
            password = secrets.token_urlsafe(12) if random_password else self._prompt_password(username)
        with transaction.atomic():
            created = user is None
            if user is None:
                user = User.objects.create_user(username=username, password=password)
            if staff and not user.is_staff:
                user.is_staff = True
                user.save(update_fields=["is_staff"])
            try:
                groups = {name: Group.objects.get(name=name) for name in ROLES}
            except Group.DoesNotExist:
                raise CommandError("The role groups are missing: run `manage.py migrate` first.") from None
            user.groups.remove(*[g for name, g in groups.items() if name != role])
            user.groups.add(groups[role])
            operator_action_record(
                actor=command_actor(actor),
                source=OperatorSource.COMMAND,
                action="role_change",
                reason=reason,
                details={"username": username, "role": role, "created": created, "staff": user.is_staff},
            )
        self.stdout.write(self.style.SUCCESS(f"{username} is now {role}."))
        if password and random_password:
            self.stdout.write(f"  password: {password}\n  (shown once: change it after logging in)")

    def _prompt_password(self, username: str) -> str:
        if not _has_terminal():  # a script, cron, `ssh host cmd`: nobody can type a password
            raise CommandError(
                f"No terminal to type a password for the new user {username!r}: add "
                f"--random-password to generate one (printed once), or run this in a terminal."
            )
        for _ in range(3):
            try:
                first = getpass.getpass(f"Password for {username}: ")
                second = getpass.getpass("Password (again): ")
            except EOFError:
                raise CommandError("No password given (end of input); use --random-password to generate one.") from None
            if first != second:
                self.stderr.write("The passwords differ; try again.")
                continue
            try:
                password_validation.validate_password(first)
            except ValidationError as exc:
                self.stderr.write(" ".join(exc.messages))
                continue
            return first
        raise CommandError("No valid password given.")


def _has_terminal() -> bool:
    """Whether getpass can prompt someone: standard input is a terminal, or /dev/tty opens."""
    if sys.stdin is not None and sys.stdin.isatty():
        return True
    try:
        with open("/dev/tty"):
            return True
    except OSError:
        return False
