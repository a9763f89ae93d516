"""Roles: the bot ingests signals and reads, nothing else.

`oms.trade` used to mean both "send signals" and "create orders" (`POST /orders`), and the bot group
also held `close_position`: a leaked bot token could close every position. `trade` now means
"send signals"; opening positions by hand is `create_order` (operators); the bot keeps only
`trade` and the view permissions.
"""

from django.db import migrations

BOT_REMOVED = ["close_position", "create_order", "change_switch"]


def split_trade_permission(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; create ours now so groups can use them.
    app_config = apps.get_app_config("oms")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    oms_perms = Permission.objects.filter(content_type__app_label="oms")
    oms_perms.filter(codename="trade").update(name="Can send signals (the bot)")
    operator = Group.objects.filter(name="operator").first()
    if operator:
        operator.permissions.add(*oms_perms.filter(codename="create_order"))
    bot = Group.objects.filter(name="bot").first()
    if bot:
        bot.permissions.remove(*oms_perms.filter(codename__in=BOT_REMOVED))


def restore_old_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    bot = Group.objects.filter(name="bot").first()
    if bot:
        bot.permissions.add(*Permission.objects.filter(content_type__app_label="oms", codename="close_position"))


class Migration(migrations.Migration):
    dependencies = [
        ("oms", "0008_close_failures"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="position",
            options={"ordering": ["-created_at", "-id"],
                     "permissions": [("close_position", "Can close positions (one, selected or all)"),
                                     ("trade", "Can send signals (the bot)"),
                                     ("create_order", "Can open positions by hand (POST /orders)")]},
        ),
        migrations.RunPython(split_trade_permission, restore_old_roles),
    ]
