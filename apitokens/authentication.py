"""`Authorization: Token <key>` (the wire format of DRF's TokenAuthentication) against hashed keys."""

from __future__ import annotations

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from apitokens.models import ApiToken, hash_key


class HashedTokenAuthentication(TokenAuthentication):
    """DRF's header parsing and error answers; the key is looked up by its SHA-256.

    A subclass of TokenAuthentication, so drf-spectacular documents it as the same `tokenAuth`.
    """

    model = ApiToken

    def authenticate_credentials(self, key: str):
        token = ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)).first()
        if token is None:
            raise AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return token.user, token
