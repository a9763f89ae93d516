"""Login throttling and lockout (django-axes) and the JSON events of failed logins.

Every failed console/admin login is a `login_failed` event (username, client address, path; never
the password); reaching LOGIN_FAILURE_LIMIT failures is a `login_locked_out` event and the login
answers 429 for LOGIN_LOCKOUT_MIN minutes (a success resets the count). An operator unlocks with
`manage.py axes_reset_username NAME` (or `axes_reset` for everyone): docs/RUNBOOK.md.

API tokens and HMAC signatures do not go through Django's `authenticate()`: they are not
throttled here (a token is 160 random bits, not a password).
"""

from __future__ import annotations

import logging

from axes.backends import AxesStandaloneBackend
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from lomsite.jsonlog import log_event

logger = logging.getLogger("loms.auth")


class LoginGuardBackend(AxesStandaloneBackend):
    """Axes' lockout check for logins that come with a request (the login page, the admin).

    A call without a request (the test client's `login()`, a shell) is not an HTTP login: nothing
    to throttle, and axes would refuse it with an exception.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def login_username(request, credentials: dict | None = None) -> str:
    """The username a login attempt is counted under: at most 150 characters, Django's own limit
    (a longer one cannot be an account, and axes' column would refuse it on PostgreSQL)."""
    if credentials:
        value = credentials.get("username")
    else:
        value = request.POST.get("username") if request is not None else None
    return str(value or "")[:150]


def client_ip(request) -> str | None:
    """The client's address: behind the TLS proxy, the address the proxy saw, i.e. the right-most
    X-Forwarded-For entry (nginx appends it; entries to its left come from the client and can be
    forged); otherwise REMOTE_ADDR."""
    if settings.BEHIND_TLS_PROXY:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if forwarded and forwarded[-1]:
            return forwarded[-1][:45]
    return request.META.get("REMOTE_ADDR")


@receiver(user_login_failed, dispatch_uid="loms.login_failed")
def log_failed_login(sender, credentials: dict, request=None, **kwargs) -> None:
    log_event(
        logger,
        "login_failed",
        level=logging.WARNING,
        username=str(credentials.get("username", ""))[:150],
        ip=client_ip(request) if request is not None else None,
        path=request.path[:200] if request is not None else None,
    )


@receiver(user_locked_out, dispatch_uid="loms.login_locked_out")
def log_lockout(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    log_event(
        logger,
        "login_locked_out",
        level=logging.WARNING,
        username=(username or "")[:150],
        ip=ip_address,
        failure_limit=settings.AXES_FAILURE_LIMIT,
        lockout_min=int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
    )
