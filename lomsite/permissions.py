"""A console request's permissions in one query, where Django's ModelBackend takes two."""

from __future__ import annotations

from django.contrib.auth.models import Permission


def permissions_prefetch(user) -> None:
    """Read `user`'s permissions, its own and its groups', in one query, and keep them where
    Django's ModelBackend looks first: `_perm_cache`, the set its `get_all_permissions` builds from
    those two queries and keeps on the user. The request's permission checks and its template's
    `perms` then read nothing more. Anonymous, inactive and superusers need no query and are left
    to Django, as is a user whose permissions are already loaded."""
    if user.is_anonymous or not user.is_active or user.is_superuser or hasattr(user, "_perm_cache"):
        return
    fields = ("content_type__app_label", "codename")
    own = user.user_permissions.values_list(*fields).order_by()
    groups = Permission.objects.filter(group__in=user.groups.all()).values_list(*fields).order_by()
    user._perm_cache = {f"{app}.{codename}" for app, codename in own.union(groups)}
