"""The signal audit trail: one JSON line per received signal, in `AUDIT_LOG_PATH`."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

_write_lock = threading.Lock()


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def audit_append(record: dict) -> None:
    """Append one line. The file is opened per write so an external rotation never loses lines."""
    line = json.dumps({"logged_at": timezone.now().isoformat(), **record}, default=_default, sort_keys=True) + "\n"
    path = settings.AUDIT_LOG_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    with _write_lock, open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
