from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError

from apitokens.models import ApiToken

ROLES = ("bot", "operator", "viewer")


class Command(BaseCommand):
    help = ("Create (or replace with --rotate) the API token of an account and print it, once: only its hash "
            "is stored. A new account is created with no password (it cannot log in to the console).")

    def add_arguments(self, parser):
        parser.add_argument("name", help="account name, e.g. rickybot")
        parser.add_argument("--role", choices=ROLES, default="bot",
                            help="bot: send signals and read (default); operator: also close, close all, "
                                 "POST /orders and the switch; viewer: read only")
        parser.add_argument("--rotate", action="store_true", help="replace an existing token with a new one")

    def handle(self, *args, name, role, rotate, **options):
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
            raise CommandError(f"{name} already has a token ({existing.prefix}…, created "
                               f"{existing.created:%Y-%m-%d %H:%M} UTC). Only its hash is stored, so it cannot be "
                               "shown again: use --rotate for a new one (the old one stops working).")
        self.stdout.write(ApiToken.issue(user))
        self.stderr.write("Shown once: only its hash is stored. Put it in the bot's configuration now.")
