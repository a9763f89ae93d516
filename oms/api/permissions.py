"""Who may call the API: reads need a login or token, writes a permission; dev may open it all."""

from __future__ import annotations

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission


class ApiPermission(BasePermission):
    """Reads: any authenticated caller. Writes: the view's `write_permission` (e.g. `oms.trade`).

    With `API_ALLOW_ANONYMOUS` (dev profile only) everything is open, so the bot's local
    scripts work without a token.
    """

    message = "Authentication with an API token or a session is required."

    def has_permission(self, request, view) -> bool:
        if settings.API_ALLOW_ANONYMOUS:
            return True
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return True
        required = getattr(view, "write_permission", None)
        if required is None:
            return False
        if not user.has_perm(required):
            self.message = f"Your account lacks the permission {required}."
            return False
        return True


class AllowAnyone(BasePermission):
    def has_permission(self, request, view) -> bool:
        return True
