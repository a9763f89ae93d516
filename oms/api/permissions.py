"""Who may call the API: reads need a login or token, writes a permission; dev may open it all."""

from __future__ import annotations

from django.conf import settings
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission

# What a page of another site can make a browser send without a CORS preflight ("simple" requests).
SIMPLE_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
BROWSER_HEADERS = ("Origin", "Referer", "Sec-Fetch-Site", "Sec-Fetch-Mode")


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
        if not user.has_perm(required):  # one query (lomsite.permissions.ModelBackend)
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
