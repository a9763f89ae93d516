from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError

from apitokens.models import PREFIX_LENGTH, ApiToken
from oms.models import OperatorSource
from oms.services.operator_audit import command_actor, operator_action_record

ROLES = ("bot", "operator", "viewer")


class Command(BaseCommand):
    help = (
        "Create (or replace with --rotate) the API token of an account and print it, once: only its hash "
        "is stored. A new account is created with no password (it cannot log in to the console)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="account name, e.g. rickybot")
        parser.add_argument(
            "--role",
            choices=ROLES,
            default="bot",
            help="bot: send signals and read (default); operator: also close, close all, "
            "POST /orders and the switch; viewer: read only",
        )
        parser.add_argument("--rotate", action="store_true", help="replace an existing token with a new one")
        parser.add_argument("--actor", default=None, help="who is issuing it (default: the OS user)")
        parser.add_argument("--reason", default="", help="why (recorded in the operator audit)")

    def handle(self, *args, name, role, rotate, actor=None, reason="", **options):
        user, created = User.objects.get_or_create(username=name)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        try:
            user.groups.add(Group.objects.get(name=role))
        except Group.DoesNotExist:
            raise CommandError(f"role {role!r} missing: run `manage.py migrate` first") from None
        existing = ApiToken.objects.filter(user=user).first()
        if existing and not rotate:
            raise CommandError(
                f"{name} already has a token ({existing.prefix}…, created "
                f"{existing.created:%Y-%m-%d %H:%M} UTC). Only its hash is stored, so it cannot be "
                "shown again: use --rotate for a new one (the old one stops working)."
            )
        key = ApiToken.issue(user)
        # The audit names the token by its prefix (as the admin shows it), never by the key itself.
        operator_action_record(
            actor=command_actor(actor),
            source=OperatorSource.COMMAND,
            action="token_rotated" if existing else "token_created",
            reason=reason,
            details={"account": name, "role": role, "prefix": key[:PREFIX_LENGTH], "account_created": created},
        )
        self.stdout.write(key)
        self.stderr.write("Shown once: only its hash is stored. Put it in the bot's configuration now.")
