import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("oms", "0010_notifications"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditSpool",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("signal_row_id", models.BigIntegerField(blank=True, db_index=True, null=True)),
                ("line", models.TextField(help_text="The JSON line, exactly as it is to be appended")),
                ("error", models.CharField(blank=True, max_length=300)),
            ],
        ),
    ]
