"""`Authorization: Token <key>` (the wire format of DRF's TokenAuthentication) against hashed keys."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from apitokens.models import ApiToken, hash_key
from lomsite.rowsql import row_by


class HashedTokenAuthentication(TokenAuthentication):
    """DRF's header parsing and error answers; the key is looked up by its SHA-256.

    A subclass of TokenAuthentication, so drf-spectacular documents it as the same `tokenAuth`.
    """

    model = ApiToken

    def authenticate_credentials(self, key: str):
        # On every request of the bot: two reads by unique key with SQL built once (lomsite/rowsql.py).
        token = row_by(ApiToken, "key_hash", hash_key(key))
        user = token and row_by(get_user_model(), "id", token.user_id)
        if user is None:
            raise AuthenticationFailed("Invalid token.")
        token.user = user
        if not user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return token.user, token
