"""SQLite writers of the intake wait for their turn in a queue, not in SQLite's busy handler.

SQLite lets one writer in at a time. A writer that finds the database locked sleeps in SQLite's busy
handler, 1, 2, 5, 10 … up to 100 ms between tries, whether or not the lock was freed meanwhile.
Under 16 concurrent signals that sleeping, not the work, was the p99 (docs/PERFORMANCE.md, "Ingest
under concurrency"). `write_turn()` makes the intake's writers wait on an exclusive `flock` of a file
beside the database instead (each writer with its own descriptor, so threads and processes queue
alike): the kernel wakes the next writer as soon as the previous one commits.

Writers that do not queue (the sweep, the console, commands) still meet the queued ones in SQLite's
own lock and busy handler, so correctness never depends on the queue. A writer that got its turn
after DB_LOCK_TIMEOUT_SEC raises the error SQLite raises ("database is locked"), which the API
answers with 503 and Retry-After; so a request waits at most that long in the queue plus that long
in SQLite's busy handler. A lock file that cannot be opened (made by another user, say) is logged
once and the writer goes on without the queue. On other databases `write_turn()` does nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import OperationalError, connections

from lomsite.jsonlog import log_event

logger = logging.getLogger("loms.db")


def _lock_path(using: str) -> str | None:
    connection = connections[using]
    name = str(connection.settings_dict["NAME"] or "")
    if connection.vendor != "sqlite" or not name or name == ":memory:" or name.startswith("file:"):
        return None
    return f"{name}.writers"


_warned: set[str] = set()


def _warn_once(path: str, exc: OSError) -> None:
    if path not in _warned:
        _warned.add(path)
        log_event(logger, "write_queue_unavailable", level=logging.WARNING, path=path, error=str(exc))


@contextmanager
def write_turn(using: str = "default") -> Iterator[None]:
    """Hold this database's write turn for the block (wrap a whole `transaction.atomic()`)."""
    path = _lock_path(using)
    if path is None or connections[using].in_atomic_block:  # not SQLite, or already inside a transaction
        yield
        return
    began = time.monotonic()
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # its own: queued apart
    except OSError as exc:  # e.g. made by another user: SQLite's own lock still keeps writers apart
        _warn_once(path, exc)
        yield
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # releases the GIL while it waits
        if time.monotonic() - began > settings.DB_LOCK_TIMEOUT_SEC:
            raise OperationalError("database is locked (waited for the write turn)")
        yield
    finally:
        os.close(descriptor)  # releases the turn
