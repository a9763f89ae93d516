"""Group commit: the intake's concurrent writes in one process share one transaction and one commit.

Every signal that opens a position writes in one transaction behind one serialising lock (SQLite's
single writer, PostgreSQL's switch row). Under concurrency that lock, not the CPU, set the pace: the
writer holding it shared its process (the GIL) with the requests around it, and paid a commit alone.
`group_commit(work)` queues `work` instead; one of the waiting threads (the leader) runs every queued
piece of work in its own savepoint inside one transaction, commits once, then hands each thread its
result or its exception. Meanwhile the others sleep, so the leader has the process to itself.

- Isolation: a piece of work that raises is rolled back to its savepoint and its exception is raised in
  its own thread; the others in the batch are unaffected.
- All or nothing per batch: if the commit (or the write turn) fails, every piece of the batch gets that
  error and nothing of it is written.
- `transaction.on_commit` callbacks registered by the work run after the batch's commit, in the
  leader's thread (callbacks of a piece rolled back to its savepoint are discarded, as Django does).
- Each piece sees the pieces before it in the batch (one transaction), so limits checked inside the
  work count them.
- A thread inside a transaction already (tests, nested calls) runs its work directly in a savepoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from django.db import connection, transaction

from lomsite.sqlite.queue import write_turn

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


def _run_batch() -> None:
    """Run every queued piece of work in one transaction, wake their threads, pass the lead on."""
    global _leading
    with _lock:
        batch = list(_queue)
        _queue.clear()
    try:
        with write_turn(), transaction.atomic():
            for item in batch:
                try:  # alone in its batch, its failure rolls the transaction back: no savepoint needed
                    with transaction.atomic(savepoint=len(batch) > 1):
                        item.result = item.run()
                except Exception as exc:  # this piece only: rolled back to its savepoint
                    item.error = exc
    except BaseException as exc:  # the turn, BEGIN or COMMIT failed: nothing of the batch is written
        for item in batch:
            item.result, item.error = None, item.error or exc
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
