"""A console request's permissions in one query, where Django's ModelBackend takes two."""

from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection


def permissions_prefetch(user) -> None:
    """Read `user`'s permissions, its own and its groups', in one query, and keep them where
    Django's ModelBackend looks first: `_perm_cache`, the set its `get_all_permissions` builds from
    those two queries and keeps on the user. The request's permission checks and its template's
    `perms` then read nothing more. Anonymous, inactive and superusers need no query and are left
    to Django, as is a user whose permissions are already loaded."""
    if user.is_anonymous or not user.is_active or user.is_superuser or hasattr(user, "_perm_cache"):
        return
    with connection.cursor() as cursor:
        cursor.execute(_permissions_statement(connection.vendor), [user.pk, user.pk])
        user._perm_cache = {f"{app_label}.{codename}" for app_label, codename in cursor.fetchall()}


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
