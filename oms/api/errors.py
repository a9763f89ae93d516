"""One JSON shape for every API error: domain errors and DRF's own."""

from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from oms.exceptions import OmsError


def exception_handler(exc, context):
    if isinstance(exc, OmsError):
        return Response({"error": exc.code, "detail": exc.message}, status=exc.status_code)
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
