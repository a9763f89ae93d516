"""The sweep lease and the loop that holds it, in process (the real cluster: tests/test_qcluster_e2e.py)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from oms.models import AutoCloseMonitor, SweepRun
from oms.services import auto_close
from oms.services.auto_close import (
    SCHEDULE_NAME,
    auto_close_loop_run,
    lease_acquire,
    lease_acquire_or_watch,
    lease_hand_over,
    lease_renew,
)
from oms.tasks import on_worker_spawn
from pricing.sources.dummy import DummySource


def hold_lease(owner: str, seconds: float) -> None:
    AutoCloseMonitor.objects.update_or_create(
        pk=1, defaults={"lease_owner": owner, "lease_expires_at": timezone.now() + timedelta(seconds=seconds)}
    )


@pytest.mark.django_db
def test_only_one_owner_can_hold_the_lease_until_it_lapses(settings):
    settings.AUTO_CLOSE_LEASE_SEC = 5
    assert lease_acquire("a") is True
    assert lease_acquire("b") is False
    assert lease_renew("a") is True and lease_renew("b") is False
    AutoCloseMonitor.objects.filter(pk=1).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert lease_renew("a") is False  # lapsed: renewal refuses, someone else may have it now
    assert lease_acquire("b") is True
    assert lease_renew("a") is False and AutoCloseMonitor.load().lease_owner == "b"


@pytest.mark.django_db
def test_a_handed_over_lease_can_only_be_claimed_by_the_successor_token():
    assert lease_acquire("a")
    assert lease_hand_over("a", "successor-token")
    assert lease_acquire("intruder") is False
    assert lease_acquire("intruder", handover="wrong-token") is False
    assert lease_acquire("b", handover="successor-token") is True
    assert AutoCloseMonitor.load().lease_owner == "b"
    assert lease_hand_over("a", "another") is False  # a no longer owns it


@pytest.mark.django_db
def test_a_watcher_takes_over_a_lease_whose_holder_stopped_renewing():
    hold_lease("dead-loop", 0.6)
    started = time.monotonic()
    assert lease_acquire_or_watch("watcher", budget_sec=3) is True
    assert 0.4 < time.monotonic() - started < 2
    assert AutoCloseMonitor.load().lease_owner == "watcher"


@pytest.mark.django_db
def test_a_watcher_leaves_as_soon_as_it_sees_the_holder_renew(monkeypatch):
    hold_lease("live-loop", 5)
    real_sleep = time.sleep

    def holder_renews_meanwhile(seconds):
        AutoCloseMonitor.objects.filter(pk=1).update(lease_expires_at=timezone.now() + timedelta(seconds=5))
        real_sleep(0.01)

    monkeypatch.setattr(auto_close.time, "sleep", holder_renews_meanwhile)
    started = time.monotonic()
    assert lease_acquire_or_watch("watcher", budget_sec=10) is False
    assert time.monotonic() - started < 1
    assert AutoCloseMonitor.load().lease_owner == "live-loop"


@pytest.mark.django_db
def test_the_loop_sweeps_every_interval_then_hands_the_lease_to_its_enqueued_successor(settings):
    settings.AUTO_CLOSE_INTERVAL_SEC = 0.25
    enqueued = []
    result = auto_close_loop_run(run_for=1.2, source=DummySource(), enqueue=lambda **kw: enqueued.append(kw))
    assert result.acquired and result.stopped == "handed over"
    assert 4 <= result.sweeps <= 6 and result.errors == 0
    gaps = [b - a for a, b in zip(result.sweep_starts, result.sweep_starts[1:], strict=False)]
    assert all(0.2 < gap < 0.35 for gap in gaps), gaps
    [successor] = enqueued
    assert successor["handover"] == result.successor == AutoCloseMonitor.load().lease_owner
    assert abs(successor["first_sweep_at"] - (result.sweep_starts[-1] + 0.25)) < 0.05  # the cadence continues
    assert SweepRun.objects.filter(owner=result.owner).count() == result.sweeps
    follower = auto_close_loop_run(run_for=0.3, source=DummySource(), enqueue=lambda **kw: None, **successor)
    assert follower.acquired and follower.sweep_starts[0] >= successor["first_sweep_at"]


@pytest.mark.django_db
def test_the_loop_leaves_without_sweeping_when_a_live_loop_holds_the_lease(settings, monkeypatch):
    settings.AUTO_CLOSE_INTERVAL_SEC = 0.25
    hold_lease("live-loop", 30)
    monkeypatch.setattr(auto_close, "lease_acquire_or_watch", lambda owner, handover=None: False)
    result = auto_close_loop_run(run_for=1, source=DummySource(), enqueue=lambda **kw: None)
    assert (result.acquired, result.sweeps, result.stopped) == (False, 0, "lease held by a live loop")


@pytest.mark.django_db
def test_the_loop_stops_when_its_lease_is_taken_mid_sweep_and_that_sweep_writes_nothing(settings):
    settings.AUTO_CLOSE_INTERVAL_SEC = 0.1

    class StolenDuringQuotes(DummySource):
        def get_quotes(self, symbols):
            hold_lease("usurper", 30)
            return super().get_quotes(symbols)

    from oms.tests.factories import open_position

    open_position(created_at=timezone.now() - timedelta(minutes=5), tp="99")
    result = auto_close_loop_run(run_for=5, source=StolenDuringQuotes(), enqueue=lambda **kw: None)
    assert (result.acquired, result.sweeps, result.stopped) == (True, 0, "lease lost")
    assert not SweepRun.objects.exists()
    assert AutoCloseMonitor.load().lease_owner == "usurper"


@pytest.mark.django_db(transaction=True)
def test_two_loops_started_together_never_sweep_at_the_same_time(settings):
    settings.AUTO_CLOSE_INTERVAL_SEC = 0.2
    results = []

    def run():
        try:
            results.append(auto_close_loop_run(run_for=1.5, source=DummySource(), enqueue=lambda **kw: None))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(r.acquired for r in results) == [False, True]
    runs = list(SweepRun.objects.order_by("started_at"))
    assert len(runs) >= 5 and len({r.owner for r in runs}) == 1
    assert all(a.finished_at <= b.started_at for a, b in zip(runs, runs[1:], strict=False))


@pytest.mark.django_db
def test_the_watchdog_schedule_exists_after_migrate_and_is_recreated_at_worker_start():
    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "oms.tasks.auto_close_loop",
        Schedule.MINUTES,
        1,
        -1,
    )
    schedule.delete()
    on_worker_spawn(sender="django_q", proc_name="Process-1")
    assert Schedule.objects.filter(name=SCHEDULE_NAME).count() == 1
    [queued] = OrmQ.objects.all()
    assert queued.task["func"] == "oms.tasks.auto_close_loop"
