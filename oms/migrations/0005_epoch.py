from django.db import migrations, models


class Migration(migrations.Migration):
    """The paper epoch: the account_label that new positions get (manage.py new_epoch)."""

    dependencies = [
        ("oms", "0003_auto_close"),
    ]

    operations = [
        migrations.AddField(
            model_name="omscontrol",
            name="epoch",
            field=models.CharField(default="default", max_length=64),
        ),
        migrations.AddField(
            model_name="omscontrol",
            name="epoch_started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
