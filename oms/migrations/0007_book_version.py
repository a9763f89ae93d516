from django.db import migrations, models


def create_row(apps, schema_editor):
    apps.get_model("oms", "BookVersion").objects.get_or_create(pk=1)


class Migration(migrations.Migration):

    dependencies = [
        ('oms', '0006_perf_indexes'),
    ]

    operations = [
        migrations.CreateModel(
            name='BookVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('token', models.CharField(default='initial', max_length=32)),
            ],
        ),
        migrations.RunPython(create_row, migrations.RunPython.noop),
    ]
