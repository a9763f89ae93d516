"""API tokens stored hashed: the database (and so every backup) holds no working key.

A key is 40 hex characters (160 random bits), shown once when it is issued. Only its SHA-256
and its first characters (to recognise it in the admin) are stored. A slow password hash is not
needed: the key is random, not chosen by a person, so it cannot be guessed from its hash.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models, transaction

KEY_BYTES = 20  # 40 hex characters, like DRF's authtoken keys (the bot's configs expect that shape)
PREFIX_LENGTH = 8


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_token")
    key_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the key (the key is never stored)")
    prefix = models.CharField(max_length=PREFIX_LENGTH, help_text="first characters of the key, to recognise it")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, user) -> str:
        """A new key for `user`, replacing any previous one; returns the key (its only appearance)."""
        key = secrets.token_hex(KEY_BYTES)
        with transaction.atomic():
            cls.objects.filter(user=user).delete()
            cls.objects.create(user=user, key_hash=hash_key(key), prefix=key[:PREFIX_LENGTH])
        return key
