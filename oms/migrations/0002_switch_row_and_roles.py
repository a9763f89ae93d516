"""The OMS switch row and the roles: viewer (read-only), operator (close, switch), bot (API)."""

from django.db import migrations

VIEW = ["view_position", "view_order", "view_signal", "view_omscontrol", "view_omsswitchchange",
        "view_autoclosemonitor"]
ROLES = {
    "viewer": VIEW,
    "operator": VIEW + ["close_position", "trade", "change_switch"],
    "bot": VIEW + ["close_position", "trade"],
}


def create_switch_row_and_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations; create ours now so groups can use them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    apps.get_model("oms", "OmsControl").objects.get_or_create(pk=1, defaults={"reason": "initial state"})
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(Permission.objects.filter(content_type__app_label="oms", codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("oms", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_switch_row_and_roles, migrations.RunPython.noop)]
