"""Who may call the API: reads need a login or token, writes a permission; dev may open it all."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Q
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
    return Permission.objects.filter(
        Q(user=user) | Q(group__user=user), content_type__app_label=app_label, codename=codename
    ).exists()


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
