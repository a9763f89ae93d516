"""One JSON shape for every API error: domain errors and DRF's own."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from lomsite.groupcommit import BatchAborted
from oms.exceptions import OmsError

RETRY_AFTER_SEC = 5
LOCK_TIMEOUT_SQLSTATES = {"55P03"}  # PostgreSQL lock_not_available (lock_timeout, NOWAIT)
LOCK_TIMEOUT_MESSAGES = ("database is locked", "database table is locked", "lock timeout")


def is_retryable(exc: BaseException) -> bool:
    """A database lock held by someone else past our timeout (SQLite busy, PostgreSQL lock_timeout), or
    a write batch rolled back because of another request's failure (lomsite/groupcommit.py): the
    request may simply be retried, unlike any other database error."""
    if isinstance(exc, BatchAborted):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if getattr(exc.__cause__, "sqlstate", None) in LOCK_TIMEOUT_SQLSTATES:
        return True
    return any(message in str(exc).lower() for message in LOCK_TIMEOUT_MESSAGES)


def _response_for(exc) -> Response | None:
    if isinstance(exc, OmsError):
        return Response({"error": exc.code, "detail": exc.message}, status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {
                "error": "too_large",
                "detail": f"The body is larger than the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes accepted.",
            },
            status=400,
        )
    if is_retryable(exc):
        return Response(
            {"error": "database_busy", "detail": "The database is busy: retry shortly."},
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SEC)},
        )
    return None


def exception_handler(exc, context):
    response = _response_for(exc)
    if response is not None:
        if getattr(context.get("view"), "signal_endpoint", False):
            response.data = {"received": False, **response.data}
        return response
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": getattr(exc, "default_code", "error"), "detail": str(response.data["detail"])}
    else:
        response.data = {"error": "invalid", "errors": response.data}
    if getattr(context.get("view"), "signal_endpoint", False):
        response.data = {"received": False, **response.data}
    return response
