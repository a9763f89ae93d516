from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

ROLES = ("bot", "operator", "viewer")


class Command(BaseCommand):
    help = ("Create (or rotate with --rotate) the API token of a bot account and print it. "
            "The account is created with no password (it cannot log in to the console).")

    def add_arguments(self, parser):
        parser.add_argument("name", help="account name, e.g. rickybot")
        parser.add_argument("--role", choices=ROLES, default="bot",
                            help="bot: send signals, create orders, close positions (default); "
                                 "operator: also the switch; viewer: read only")
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
        if rotate:
            Token.objects.filter(user=user).delete()
        token, token_created = Token.objects.get_or_create(user=user)
        if not token_created:
            self.stderr.write(f"{name} already has a token (use --rotate for a new one); it is:")
        self.stdout.write(token.key)
