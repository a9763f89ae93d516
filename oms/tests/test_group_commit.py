"""lomsite/groupcommit.py: concurrent writes of one process share a transaction, each in its own
savepoint; one that fails is rolled back alone; a batch that cannot commit writes nothing."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest
from django.db import OperationalError, connections, transaction

from lomsite import groupcommit
from lomsite.groupcommit import group_commit
from oms.models import OmsSwitchChange
from tests.support import run_together

pytestmark = pytest.mark.django_db(transaction=True)


def change(reason: str) -> OmsSwitchChange:
    return OmsSwitchChange.objects.create(enabled=True, reason=reason, changed_by="test")


def reasons() -> list[str]:
    return sorted(OmsSwitchChange.objects.filter(changed_by="test").values_list("reason", flat=True))


def wait_for_queue(length: int) -> None:
    deadline = time.monotonic() + 10
    while len(groupcommit._queue) < length:
        assert time.monotonic() < deadline, "the pieces never queued"
        time.sleep(0.005)


class Refused(Exception):
    pass


def test_pieces_queued_behind_a_batch_run_together_and_one_failing_is_rolled_back_alone():
    gate, first_running = threading.Event(), threading.Event()
    ran_in: dict[str, int] = {}
    committed_hooks: list[str] = []

    def piece(reason: str, *, fail: bool = False, wait: bool = False):
        def work():
            ran_in[reason] = threading.get_ident()
            row = change(reason)
            transaction.on_commit(lambda: committed_hooks.append(reason))
            if wait:
                first_running.set()
                gate.wait(10)  # holds the first batch open while the others queue behind it
            if fail:
                raise Refused(reason)
            return row.pk

        return work

    def first():
        return group_commit(piece("first", wait=True))

    def later(reason: str, fail: bool = False):
        def call():
            assert first_running.wait(10)  # queues behind the first batch, which is running
            try:
                return group_commit(piece(reason, fail=fail))
            except Refused as exc:
                return exc

        return call

    def release():
        wait_for_queue(3)
        gate.set()

    results = run_together([first, later("b"), later("c", fail=True), later("d"), release])
    first_pk, b_pk, c_error, d_pk, _ = results
    assert isinstance(c_error, Refused) and str(c_error) == "c"
    assert reasons() == ["b", "d", "first"]
    assert {OmsSwitchChange.objects.get(pk=pk).reason for pk in (first_pk, b_pk, d_pk)} == {"first", "b", "d"}
    # b, c and d ran in one batch, in the thread of whichever of them led it; the first batch alone.
    assert ran_in["b"] == ran_in["c"] == ran_in["d"] != ran_in["first"]
    assert sorted(committed_hooks) == ["b", "d", "first"]  # c's hook went with its savepoint
    assert groupcommit._queue == [] and not groupcommit._leading


def test_a_batch_that_cannot_take_its_turn_writes_nothing_and_every_piece_gets_the_error(monkeypatch):
    @contextmanager
    def locked_out():
        raise OperationalError("database is locked (waited for the write turn)")
        yield

    monkeypatch.setattr(groupcommit, "write_turn", locked_out)
    calls = [lambda i=i: group_commit(lambda: change(f"r{i}")) for i in range(4)]
    outcomes = []
    for call in calls:
        with pytest.raises(OperationalError, match="write turn"):
            call()
        outcomes.append("refused")
    assert outcomes == ["refused"] * 4
    assert reasons() == []
    assert groupcommit._queue == [] and not groupcommit._leading


def test_a_batch_whose_commit_fails_hands_every_piece_the_error_and_the_lead_moves_on(monkeypatch):
    """The commit itself fails (simulated by the connection's commit raising): nothing is written,
    every piece of that batch raises, and the next piece still runs and commits."""
    wrapper = type(connections["default"])
    original = wrapper.commit
    failures = iter([True])

    def commit(self):
        if next(failures, False):
            raise OperationalError("disk I/O error")
        return original(self)

    monkeypatch.setattr(wrapper, "commit", commit)
    with pytest.raises(OperationalError, match="disk I/O error"):
        group_commit(lambda: change("lost"))
    assert group_commit(lambda: change("kept").reason) == "kept"
    assert reasons() == ["kept"]


def test_inside_a_transaction_the_work_runs_at_once_in_a_savepoint():
    def refused():
        change("inner")
        raise Refused

    with transaction.atomic():
        change("outer")
        with pytest.raises(Refused):
            group_commit(refused)
        assert group_commit(lambda: change("kept").reason) == "kept"
        assert groupcommit._queue == [] and not groupcommit._leading
    assert reasons() == ["kept", "outer"]


def test_a_piece_alone_in_its_batch_that_fails_writes_nothing_and_runs_no_hook():
    hooks: list[str] = []

    def refused():
        change("alone")
        transaction.on_commit(lambda: hooks.append("alone"))
        raise Refused

    with pytest.raises(Refused):
        group_commit(refused)
    assert group_commit(lambda: change("next").reason) == "next"
    assert reasons() == ["next"] and hooks == []
