"""Group commit: the intake's concurrent writes in one process share one transaction and one commit.

Every signal that opens a position writes in one transaction behind one serialising lock (SQLite's
single writer, PostgreSQL's switch row). Under concurrency that lock, not the CPU, set the pace: the
writer holding it shared its process (the GIL) with the requests around it, and paid a commit alone.
`group_commit(work)` queues `work` instead; one of the waiting threads (the leader) runs every queued
piece of work in its own savepoint inside one transaction, commits once, then hands each thread its
result or its exception. Meanwhile the others sleep, so the leader has the process to itself.

- Isolation: a piece of work that raises is rolled back to its savepoint and its exception is raised in
  its own thread; the others in the batch are unaffected. On PostgreSQL the batch checks foreign keys
  at each statement (`SET CONSTRAINTS ALL IMMEDIATE`), so a bad reference fails its own piece; SQLite
  checks them only at COMMIT, where one fails the whole batch.
- All or nothing per batch: if the turn, BEGIN or COMMIT fails, or the transaction can no longer go on
  (a savepoint that cannot be rolled back, a lost connection, an error swallowed inside the work),
  nothing of the batch is written and every piece raises: its own error, else a copy of the batch's,
  else `BatchAborted` (the API's 503 with Retry-After). Nobody hears "done" for a write that is lost.
- `transaction.on_commit` callbacks registered by the work run after the batch's commit, in the
  leader's thread (callbacks of a piece rolled back to its savepoint are discarded, as Django does).
  One that raises after the COMMIT is logged (`group_commit_hook_failed`) and every piece keeps its
  result; Django skips the callbacks after it, so the intake registers its own with `robust=True`.
- Each piece sees the pieces before it in the batch (one transaction), so limits checked inside the
  work count them.
- A thread inside a transaction already (tests, nested calls) runs its work directly in a savepoint.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from django.db import DatabaseError, connection, transaction

from lomsite.jsonlog import log_event
from lomsite.sqlite.queue import write_turn

logger = logging.getLogger("loms.db")

T = TypeVar("T")


@dataclass(eq=False)
class _Work(Generic[T]):
    run: Callable[[], T]
    wake: threading.Event = field(default_factory=threading.Event)
    finished: bool = False  # its batch ran: `result` or `error` is set
    lead: bool = False  # it is first in the queue and is to lead the next batch
    result: T | None = None
    error: BaseException | None = None


_lock = threading.Lock()
_queue: list[_Work] = []
_leading = False  # a thread of this process is running a batch


def group_commit(work: Callable[[], T]) -> T:
    """Run `work` in this process's next write batch (one transaction, its own savepoint); return its
    value or raise its exception once the batch has committed."""
    if connection.in_atomic_block:
        with transaction.atomic():
            return work()
    global _leading
    item: _Work[T] = _Work(work)
    with _lock:
        _queue.append(item)
        item.lead = not _leading
        _leading = True
    while not item.finished:
        if item.lead:
            _run_batch()
        else:
            item.wake.wait()
            item.wake.clear()
    if item.error is not None:
        raise item.error
    return item.result  # type: ignore[return-value]


class BatchAborted(DatabaseError):
    """Raised in a thread whose work was rolled back with its batch because of another piece's failure."""


def _run_batch() -> None:
    """Run every queued piece of work in one transaction, wake their threads, pass the lead on."""
    global _leading
    with _lock:
        batch = list(_queue)
        _queue.clear()
    committed: list[bool] = []  # filled by the batch's first on_commit hook: the COMMIT went through
    running: _Work | None = None
    try:
        with write_turn(), transaction.atomic():
            transaction.on_commit(lambda: committed.append(True))
            if connection.vendor == "postgresql":
                # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: checked at each statement
                # instead, a bad reference fails its own piece, not the batch's COMMIT.
                with connection.cursor() as cursor:
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for item in batch:
                running = item
                try:  # alone in its batch, its failure rolls the transaction back: no savepoint needed
                    with transaction.atomic(savepoint=len(batch) > 1):
                        item.result = item.run()
                except Exception as exc:  # this piece only: rolled back to its savepoint
                    item.error = exc
                running = None
                if transaction.get_rollback() and not (len(batch) == 1 and item.error is not None):
                    # A savepoint that could not be rolled back, a lost connection, an error caught
                    # inside the work: the transaction can only roll back, so nobody may hear "done".
                    raise BatchAborted("the write batch was rolled back (its transaction could not go on)")
    except BaseException as exc:
        if committed:  # an on_commit hook registered without robust=True raised after the COMMIT
            log_event(logger, "group_commit_hook_failed", level=logging.ERROR, error=repr(exc))
        else:  # nothing of the batch is written: every piece fails, each with an exception of its own
            for item in batch:
                item.result = None
                if item.error is None:
                    item.error = exc if item is running else _for_another_thread(exc)
    finally:
        for item in batch:
            item.finished = True
        with _lock:
            if _queue:
                _queue[0].lead = True
                _queue[0].wake.set()
            else:
                _leading = False
        for item in batch:
            item.wake.set()


def _for_another_thread(exc: BaseException) -> BaseException:
    """What a piece rolled back with its batch raises: a copy of the batch's error (one exception object
    raised in several threads would mix their tracebacks), or BatchAborted when it was another piece's
    BaseException (an exit, an interrupt) that ended the batch."""
    if not isinstance(exc, Exception):
        return BatchAborted(f"the write batch was rolled back: another piece raised {exc!r}")
    try:
        duplicate = copy.copy(exc)
    except Exception:  # an exception that cannot be copied: shared rather than lost
        return exc
    duplicate.__cause__ = exc.__cause__
    return duplicate
