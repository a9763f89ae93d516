"""Django's ModelBackend, reading a user's permissions, its own and its groups', in one query.

Django's ModelBackend takes two queries (the user's, then its groups') the first time a request asks
for a permission; the console's pages, their templates' `perms` and the API's write check ask on
every request. This subclass answers exactly as Django's does (`oms/tests/test_overview_reads.py`,
`oms/tests/test_api_auth.py`) from one statement built once, kept on the user object for the rest
of the request like Django's own cache. Superusers, inactive and anonymous users, and per-object
checks are left to Django.
"""

from __future__ import annotations

from functools import cache

from django.contrib.auth import backends, get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection

PERMISSIONS_ATTRIBUTE = "_loms_permissions"  # this backend's per-request cache on the user object


class ModelBackend(backends.ModelBackend):
    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        if obj is not None or user_obj.is_anonymous or not user_obj.is_active or user_obj.is_superuser:
            return super().get_all_permissions(user_obj, obj)
        permissions = getattr(user_obj, PERMISSIONS_ATTRIBUTE, None)
        if permissions is None:
            with connection.cursor() as cursor:
                cursor.execute(_permissions_statement(connection.vendor), [user_obj.pk, user_obj.pk])
                permissions = {f"{app_label}.{codename}" for app_label, codename in cursor.fetchall()}
            setattr(user_obj, PERMISSIONS_ATTRIBUTE, permissions)
        return permissions


@cache
def _permissions_statement(vendor: str) -> str:
    """(app label, codename) of the user's own permissions and its groups', as ModelBackend reads
    them, on every console request: SQL built once (lomsite/rowsql.py says why), tables named by the
    models' metadata."""
    quote = connection.ops.quote_name
    user_model = get_user_model()
    user_permissions = user_model._meta.get_field("user_permissions").remote_field.through._meta
    user_groups = user_model._meta.get_field("groups").remote_field.through._meta
    group_permissions = Group._meta.get_field("permissions").remote_field.through._meta
    permission, content_type = Permission._meta, ContentType._meta

    def column(meta, name: str) -> str:
        return quote(meta.get_field(name).column)

    select = (
        f"SELECT c.{column(content_type, 'app_label')}, p.{column(permission, 'codename')} "
        f"FROM {quote(permission.db_table)} p JOIN {quote(content_type.db_table)} c "
        f"ON c.{column(content_type, 'id')} = p.{column(permission, 'content_type')} "
    )
    own = (
        f"JOIN {quote(user_permissions.db_table)} up ON up.{column(user_permissions, 'permission')} "
        f"= p.{column(permission, 'id')} WHERE up.{column(user_permissions, 'user')} = %s"
    )
    of_groups = (
        f"JOIN {quote(group_permissions.db_table)} gp ON gp.{column(group_permissions, 'permission')} "
        f"= p.{column(permission, 'id')} JOIN {quote(user_groups.db_table)} ug "
        f"ON ug.{column(user_groups, 'group')} = gp.{column(group_permissions, 'group')} "
        f"WHERE ug.{column(user_groups, 'user')} = %s"
    )
    return f"{select}{own} UNION {select}{of_groups}"
