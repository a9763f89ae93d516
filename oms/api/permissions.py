"""Who may call the API: reads need a login or token, writes a permission; dev may open it all."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Q
from rest_framework.permissions import SAFE_METHODS, BasePermission

MODEL_BACKEND_ONLY = ["django.contrib.auth.backends.ModelBackend"]


def user_has_perm(user, perm: str) -> bool:
    """`user.has_perm(perm)` in one query instead of loading every permission of the user and groups
    (two queries and a set per request); the same answer with Django's default ModelBackend."""
    if not isinstance(user, get_user_model()) or list(settings.AUTHENTICATION_BACKENDS) != MODEL_BACKEND_ONLY:
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
        if not user_has_perm(user, required):
            self.message = f"Your account lacks the permission {required}."
            return False
        return True
