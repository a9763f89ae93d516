"""Optional webhook signing for the signal endpoints `/signals/bounce`, `/signals/exit` and `/signals/stop`
(when SIGNAL_HMAC_SECRET is set).

The bot sends `X-Timestamp` (Unix seconds) and `X-Signature: sha256=<hex>`, the HMAC-SHA256 of

- `<X-Timestamp>.<raw body>` when the request has no `Idempotency-Key` header;
- `<X-Timestamp>\n<Idempotency-Key>\n<raw body>` when it has one.

The signature covers everything that decides a signal's identity (the body and the key the
dedupe uses), so a captured request cannot be replayed with a fresh `Idempotency-Key` to open
another position, nor with its key removed. The two forms can never be confused: a header value
holds no newline and a timestamp no dot. A signature outside SIGNAL_HMAC_WINDOW_SEC is a replay
and is refused; a malformed one (non-ASCII, say) is a 401 like any wrong one.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def signed_message(timestamp: str, body: bytes, idempotency_key: str | None = None) -> bytes:
    if idempotency_key is None:
        return timestamp.encode() + b"." + body
    return timestamp.encode() + b"\n" + idempotency_key.encode() + b"\n" + body


def sign_body(secret: str, timestamp: str, body: bytes, idempotency_key: str | None = None) -> str:
    """The `X-Signature` value of a request (pass the `Idempotency-Key` when the request carries one)."""
    digest = hmac.new(secret.encode(), signed_message(timestamp, body, idempotency_key), hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class SignedWebhookPrincipal:
    """The caller proven by a valid signature: may send signals, nothing else."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    username = "signed-webhook"
    pk = None

    def has_perm(self, perm: str, obj=None) -> bool:
        return perm == "oms.trade"

    def __str__(self) -> str:
        return self.username


class SignalHmacAuthentication(BaseAuthentication):
    def authenticate(self, request):
        secret = settings.SIGNAL_HMAC_SECRET
        if not secret:
            return None
        signature = request.headers.get(SIGNATURE_HEADER, "")
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        if not signature or not timestamp:
            raise AuthenticationFailed("Signed requests required: X-Signature and X-Timestamp headers.")
        try:
            age = abs(time.time() - int(timestamp))
        except ValueError:
            raise AuthenticationFailed("X-Timestamp must be Unix seconds.") from None
        if age > settings.SIGNAL_HMAC_WINDOW_SEC:
            raise AuthenticationFailed("X-Timestamp outside the accepted window (replay?).")
        expected = sign_body(secret, timestamp, request._request.body, request.headers.get(IDEMPOTENCY_HEADER))
        # Hex is case-insensitive; a non-ASCII header is simply wrong (never a 500).
        if not signature.isascii() or not hmac.compare_digest(expected, signature.lower()):
            raise AuthenticationFailed("Invalid signature.")
        return SignedWebhookPrincipal(), "hmac"

    def authenticate_header(self, request) -> str:
        return 'HMAC-SHA256 realm="signals"'


class SignalHmacAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = SignalHmacAuthentication
    name = "signalHmac"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": SIGNATURE_HEADER,
            "description": "sha256=<hex HMAC-SHA256 of '<X-Timestamp>.<raw body>'>, with X-Timestamp; "
            "with an Idempotency-Key: of '<X-Timestamp>\\n<Idempotency-Key>\\n<raw body>'",
        }
