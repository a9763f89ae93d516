"""Who may call the API: reads need a login or token, writes a permission; dev may open it all."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission

MODEL_BACKEND_ONLY = ["django.contrib.auth.backends.ModelBackend"]
# Backends that only guard logins (no permissions of their own): they do not change `has_perm`.
LOGIN_ONLY_BACKENDS = {"lomsite.loginguard.LoginGuardBackend", "axes.backends.AxesStandaloneBackend"}
# What a page of another site can make a browser send without a CORS preflight ("simple" requests).
SIMPLE_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
BROWSER_HEADERS = ("Origin", "Referer", "Sec-Fetch-Site", "Sec-Fetch-Mode")


def user_has_perm(user, perm: str) -> bool:
    """`user.has_perm(perm)` in one query instead of loading every permission of the user and groups
    (two queries and a set per request); the same answer with Django's default ModelBackend."""
    permission_backends = [b for b in settings.AUTHENTICATION_BACKENDS if b not in LOGIN_ONLY_BACKENDS]
    if not isinstance(user, get_user_model()) or permission_backends != MODEL_BACKEND_ONLY:
        return user.has_perm(perm)
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    app_label, _, codename = perm.partition(".")
    with connection.cursor() as cursor:
        cursor.execute(_granted_statement(connection.vendor), [user.pk, user.pk, app_label, codename])
        return cursor.fetchone() is not None


@cache
def _granted_statement(vendor: str) -> str:
    """Is the permission (app label, codename) the user's own or one of its groups'? Asked on every
    write of the bot: SQL built once (lomsite/rowsql.py says why), tables named by the models' metadata."""
    quote = connection.ops.quote_name
    user_model = get_user_model()
    user_permissions = user_model._meta.get_field("user_permissions").remote_field.through._meta
    user_groups = user_model._meta.get_field("groups").remote_field.through._meta
    group_permissions = Group._meta.get_field("permissions").remote_field.through._meta
    permission, content_type = Permission._meta, ContentType._meta

    def column(meta, name: str) -> str:
        return quote(meta.get_field(name).column)

    of_type = f"c.{column(content_type, 'id')} = p.{column(permission, 'content_type')}"
    return (
        f"SELECT 1 FROM {quote(permission.db_table)} p JOIN {quote(content_type.db_table)} c ON {of_type} "
        f"WHERE (p.{column(permission, 'id')} IN (SELECT {column(user_permissions, 'permission')} "
        f"FROM {quote(user_permissions.db_table)} WHERE {column(user_permissions, 'user')} = %s) "
        f"OR p.{column(permission, 'id')} IN (SELECT gp.{column(group_permissions, 'permission')} "
        f"FROM {quote(group_permissions.db_table)} gp JOIN {quote(user_groups.db_table)} ug "
        f"ON ug.{column(user_groups, 'group')} = gp.{column(group_permissions, 'group')} "
        f"WHERE ug.{column(user_groups, 'user')} = %s)) "
        f"AND c.{column(content_type, 'app_label')} = %s AND p.{column(permission, 'codename')} = %s"
    )


class ApiPermission(BasePermission):
    """Reads: any authenticated caller. Writes: the view's `write_permission` (e.g. `oms.trade`).

    With `API_ALLOW_ANONYMOUS` (dev profile only) anonymous callers may do everything, so the
    bot's local scripts work without a token; but an anonymous write that a browser could have sent
    must pass Django's CSRF check (`browser_write_needs_csrf`), so a page of another site cannot
    make the developer's browser close positions or flip the switch on http://127.0.0.1:8000.
    An authenticated caller is always held to its role: a bot or viewer token never writes more
    because anonymous access is open.
    """

    message = "Authentication with an API token or a session is required."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            if not settings.API_ALLOW_ANONYMOUS:
                return False
            if request.method not in SAFE_METHODS:
                browser_write_needs_csrf(request)
            return True
        if request.method in SAFE_METHODS:
            return True
        required = getattr(view, "write_permission", None)
        if required is None:
            return False
        if not user_has_perm(user, required):
            self.message = f"Your account lacks the permission {required}."
            return False
        return True


def looks_like_a_browser(request) -> bool:
    """A request a browser may have sent on behalf of another site's page: it carries an
    Origin/Referer/Sec-Fetch header (every current browser sends Origin on a POST) or a content
    type a cross-site form or a no-cors fetch can use. Scripts (curl, the bot) send JSON and none
    of these headers."""
    content_type = (request.content_type or "").split(";")[0].strip().lower()
    return content_type in SIMPLE_CONTENT_TYPES or any(name in request.headers for name in BROWSER_HEADERS)


def browser_write_needs_csrf(request) -> None:
    """Dev-only anonymous writes: from a browser, the CSRF check of a session write (the Origin
    must be this site or CSRF_TRUSTED_ORIGINS, and the CSRF token must match); raises 403."""
    if looks_like_a_browser(request):
        SessionAuthentication().enforce_csrf(request)
