"""Auto-close on django-q2: continuous sweeps every AUTO_CLOSE_INTERVAL_SEC, never two at once.

django-q's scheduler wakes about every 30 s and its schedules are a minute apart, so a sweep per
second cannot be one scheduled task each. Instead:

- A lease (fields on the AutoCloseMonitor row: owner, expires_at) says who may sweep. It is
  taken and renewed only with conditional updates, and every sweep's write transaction checks
  and renews it first (the fence), so a loop that lost its lease writes nothing.
- `oms.tasks.auto_close_loop` holds the lease and sweeps every interval for AUTO_CLOSE_LOOP_SEC,
  then hands the lease to a successor token and enqueues the successor task with the time its
  first sweep is due: the cadence continues across tasks (django-q task timeout stays far away).
- Whoever finds the lease held watches it: if it is renewed or handed over its holder is alive
  and the watcher leaves; if it lapses (the holder was killed) the watcher takes over. Every
  worker spawn (including django-q's replacement of a killed worker) enqueues such a loop, and a
  one-minute schedule does too, so a dead loop is replaced about AUTO_CLOSE_LEASE_SEC after its
  last renewal, and at the latest by the next schedule run.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.db.models import F, Q
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.models import AutoCloseMonitor
from oms.services.sweep import LeaseLost, auto_close_sweep
from pricing.sources import get_price_source
from pricing.sources.base import PriceSource

logger = logging.getLogger("loms.oms.auto_close")

SCHEDULE_NAME = "oms.auto_close_watchdog"
LOOP_TASK = "oms.tasks.auto_close_loop"
WATCH_POLL_SEC = 0.2


def new_owner_id() -> str:
    """A unique lease owner name that also says where the loop runs (host:pid)."""
    return f"{uuid.uuid4().hex[:16]}@{socket.gethostname()[:30]}:{os.getpid()}"[:64]


def lease_term_sec() -> float:
    """How long a lease lasts after each renewal: the holder renews once per interval."""
    return settings.AUTO_CLOSE_LEASE_SEC + settings.AUTO_CLOSE_INTERVAL_SEC


def _lease_seconds() -> timedelta:
    return timedelta(seconds=lease_term_sec())


def lease_acquire(owner: str, *, handover: str | None = None) -> bool:
    """Take the lease if it is free or lapsed (or was handed over to `handover`). Conditional update."""
    AutoCloseMonitor.load()
    now = timezone.now()
    available = Q(lease_owner="") | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)
    if handover:
        available |= Q(lease_owner=handover)
    return (
        AutoCloseMonitor.objects.filter(available, pk=1).update(
            lease_owner=owner,
            lease_pid=os.getpid(),
            lease_host=socket.gethostname()[:255],
            lease_expires_at=now + _lease_seconds(),
            lease_acquired_at=now,
            loops_started=F("loops_started") + 1,
        )
        == 1
    )


def lease_renew(owner: str) -> bool:
    """Extend our own unexpired lease; False means it lapsed or someone else holds it now."""
    now = timezone.now()
    return (
        AutoCloseMonitor.objects.filter(pk=1, lease_owner=owner, lease_expires_at__gt=now).update(
            lease_expires_at=now + _lease_seconds()
        )
        == 1
    )


def lease_hand_over(owner: str, successor: str) -> bool:
    """Pass our lease to the `successor` token (a fresh full term for it to start)."""
    return (
        AutoCloseMonitor.objects.filter(pk=1, lease_owner=owner).update(
            lease_owner=successor, lease_pid=None, lease_expires_at=timezone.now() + _lease_seconds()
        )
        == 1
    )


def lease_release(owner: str) -> bool:
    return (
        AutoCloseMonitor.objects.filter(pk=1, lease_owner=owner).update(
            lease_owner="", lease_pid=None, lease_expires_at=None
        )
        == 1
    )


def _lease_state() -> tuple[str, object]:
    return AutoCloseMonitor.objects.filter(pk=1).values_list("lease_owner", "lease_expires_at").get()


def lease_acquire_or_watch(owner: str, *, handover: str | None = None, budget_sec: float | None = None) -> bool:
    """Take the lease now, or watch its holder: a renewal or hand-over proves the holder alive (give
    up); a lapse means it died (take over). Gives up after `budget_sec` (default: one lease term + 1 s)."""
    if lease_acquire(owner, handover=handover):
        return True
    budget = lease_term_sec() + 1 if budget_sec is None else budget_sec
    deadline = time.monotonic() + budget
    seen = _lease_state()
    while time.monotonic() < deadline:
        time.sleep(WATCH_POLL_SEC)
        state = _lease_state()
        holder, expires_at = state
        if holder and expires_at and expires_at > timezone.now():
            if state != seen:
                return False  # renewed or handed over: its holder is alive
            continue
        if lease_acquire(owner):
            return True
        seen = _lease_state()
    return False


@dataclass
class LoopResult:
    owner: str
    acquired: bool = False
    sweeps: int = 0
    errors: int = 0
    stopped: str = ""
    successor: str = ""
    sweep_starts: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "owner": self.owner,
            "acquired": self.acquired,
            "sweeps": self.sweeps,
            "errors": self.errors,
            "stopped": self.stopped,
            "successor": self.successor,
        }


def enqueue_loop(*, handover: str = "", first_sweep_at: float | None = None) -> None:
    from django_q.tasks import async_task

    kwargs = {"handover": handover, "first_sweep_at": first_sweep_at} if handover else {}
    # save=False: a loop every few seconds must not crowd other tasks out of the saved results.
    async_task(LOOP_TASK, group="auto_close", save=False, **kwargs)


def auto_close_loop_run(
    *,
    handover: str = "",
    first_sweep_at: float | None = None,
    run_for: float | None = None,
    source: PriceSource | None = None,
    enqueue: Callable[..., None] = enqueue_loop,
    stop_requested: Callable[[], bool] = lambda: False,
) -> LoopResult:
    """Hold the sweep lease and sweep every interval for `run_for` seconds, then hand over.

    When `stop_requested()` turns true (the worker is shutting down) the loop releases the lease
    at once, so the next loop (in this or another cluster) need not wait for it to lapse.
    """
    result = LoopResult(owner=new_owner_id())
    if not lease_acquire_or_watch(result.owner, handover=handover or None):
        result.stopped = "lease held by a live loop"
        return result
    result.acquired = True
    log_event(logger, "auto_close_loop_started", owner=result.owner, handover=bool(handover))
    interval = settings.AUTO_CLOSE_INTERVAL_SEC
    deadline = time.time() + (settings.AUTO_CLOSE_LOOP_SEC if run_for is None else run_for)
    next_at = first_sweep_at or time.time()
    source = source or get_price_source()  # one source per loop: HTTP connections are reused
    while True:
        delay = next_at - time.time()
        if delay > 0:
            time.sleep(delay)
        if stop_requested():
            result.stopped = "shutdown"
            _release_quietly(result.owner)
            break
        try:
            if not (lease_renew(result.owner) or lease_acquire(result.owner)):
                result.stopped = "lease lost"
                break
            result.sweep_starts.append(time.time())
            sweep = auto_close_sweep(source=source, lease_owner=result.owner)
            result.sweeps += 1
            result.errors += bool(sweep.error)
        except LeaseLost:
            result.stopped = "lease lost"
            break
        except DatabaseError:
            result.errors += 1
            logger.exception("auto-close loop: database error; retrying at the next interval")
            close_old_connections()
        next_at = max(next_at + interval, time.time())  # an overrunning sweep delays, never doubles up
        if next_at >= deadline:
            result.stopped = "handed over"
            result.successor = _hand_over(result.owner, next_at, enqueue)
            break
    log_event(logger, "auto_close_loop_stopped", **result.as_dict())
    return result


def _hand_over(owner: str, first_sweep_at: float, enqueue: Callable[..., None]) -> str:
    successor = new_owner_id()
    try:
        if not lease_hand_over(owner, successor):
            return ""
        enqueue(handover=successor, first_sweep_at=first_sweep_at)
        return successor
    except Exception:
        logger.exception("auto-close loop: hand-over failed; the lease lapses and a watcher takes over")
        _release_quietly(successor)
        return ""


def _release_quietly(owner: str) -> None:
    try:
        lease_release(owner)
    except DatabaseError:
        logger.exception("auto-close loop: could not release the lease; it lapses by itself")


def auto_close_schedule_ensure() -> None:
    """The one-minute watchdog schedule (also created by migration oms 0003); idempotent."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": LOOP_TASK, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )


def auto_close_kick() -> None:
    """Make sure a loop runs soon: enqueue one (it takes over only if the lease lapses)."""
    auto_close_schedule_ensure()
    enqueue_loop()
