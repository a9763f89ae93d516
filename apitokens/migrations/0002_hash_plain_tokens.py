"""Move DRF's plain `authtoken_token` keys to hashed ApiTokens, then drop the plain table.

The keys keep working (the bot's configuration does not change); afterwards the database, and so
every backup, holds only their SHA-256. The table of the removed `rest_framework.authtoken` app
is dropped with its migration records. Irreversible on purpose: the plain keys are gone.
"""

from datetime import UTC

from django.db import migrations
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apitokens.models import PREFIX_LENGTH, hash_key

PLAIN_TABLE = "authtoken_token"


def hash_plain_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if PLAIN_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("apitokens", "ApiToken")
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote('key')}, {quote('user_id')}, {quote('created')} FROM {quote(PLAIN_TABLE)}")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        token, _ = ApiToken.objects.update_or_create(
            user_id=user_id, defaults={"key_hash": hash_key(key), "prefix": key[:PREFIX_LENGTH]}
        )
        created = parse_datetime(created) if isinstance(created, str) else created
        if created and timezone.is_naive(created):  # SQLite: UTC without an offset
            created = timezone.make_aware(created, UTC)
        if created:
            ApiToken.objects.filter(pk=token.pk).update(created=created)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {quote(PLAIN_TABLE)}")
        cursor.execute("DELETE FROM django_migrations WHERE app = %s", ["authtoken"])


class Migration(migrations.Migration):
    dependencies = [("apitokens", "0001_initial")]

    operations = [migrations.RunPython(hash_plain_tokens, migrations.RunPython.noop)]
