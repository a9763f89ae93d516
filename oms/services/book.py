"""The book version: bumped by every open and close, read by the caches of figures over the book."""

from __future__ import annotations

import uuid

from lomsite.rowsql import row_update
from oms.models import BookVersion


def book_changed() -> None:
    """Call inside the transaction that opens or closes positions: a new token invalidates every
    figure cached under the old one (a random token, so a restored database never reuses one)."""
    if not row_update(BookVersion, 1, "token", uuid.uuid4().hex):  # on every open: SQL built once
        BookVersion.objects.update_or_create(pk=1, defaults={"token": uuid.uuid4().hex})
