"""lomsite/groupcommit.py: concurrent writes of one process share a transaction, each in its own
savepoint; one that fails is rolled back alone; a batch that cannot commit writes nothing."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest
from django.db import DatabaseError, IntegrityError, OperationalError, connection, connections, transaction

from lomsite import groupcommit
from lomsite.groupcommit import BatchAborted, group_commit
from oms.models import OmsSwitchChange

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


def one_batch(pieces: list, *, first=None) -> list[object]:
    """Run `pieces` as one batch, in this order: a first batch (`first`'s work, if any) runs alone and
    stays open while they queue behind it. Each piece's value or exception, in order."""
    gate, holding = threading.Event(), threading.Event()
    outcomes: list[object] = [None] * len(pieces)

    def holder():
        if first is not None:
            first()
        holding.set()
        gate.wait(10)  # holds the first batch open while the pieces queue behind it

    def call(index: int, work) -> None:
        try:
            outcomes[index] = group_commit(work)
        except BaseException as exc:  # the piece's own outcome, checked by the test
            outcomes[index] = exc
        finally:
            connection.close()

    def hold() -> None:
        try:
            group_commit(holder)
        finally:
            connection.close()

    threads = [threading.Thread(target=hold)]
    threads[0].start()
    assert holding.wait(10)
    for index, work in enumerate(pieces):
        threads.append(threading.Thread(target=call, args=(index, work)))
        threads[-1].start()
        wait_for_queue(index + 1)  # queue order is batch order
    gate.set()
    for thread in threads:
        thread.join(20)
        assert not thread.is_alive(), "a thread never came back"
    assert groupcommit._queue == [] and not groupcommit._leading
    return outcomes


def test_pieces_queued_behind_a_batch_run_together_and_one_failing_is_rolled_back_alone():
    ran_in: dict[str, int] = {}
    committed_hooks: list[str] = []

    def piece(reason: str, *, fail: bool = False):
        def work():
            ran_in[reason] = threading.get_ident()
            row = change(reason)
            transaction.on_commit(lambda: committed_hooks.append(reason))
            if fail:
                raise Refused(reason)
            return row.pk

        return work

    opened_first: list[int] = []
    b_pk, c_error, d_pk = one_batch(
        [piece("b"), piece("c", fail=True), piece("d")], first=lambda: opened_first.append(piece("first")())
    )
    first_pk = opened_first[0]
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


def test_a_savepoint_that_cannot_be_rolled_back_fails_the_whole_batch_and_nobody_hears_done(monkeypatch):
    """The transaction can then only roll back: the piece before it must not be told it committed."""
    wrapper = type(connections["default"])
    original = wrapper.savepoint_rollback
    broken = threading.Event()

    def savepoint_rollback(self, sid):
        if broken.is_set():
            broken.clear()
            raise OperationalError("disk I/O error")
        return original(self, sid)

    monkeypatch.setattr(wrapper, "savepoint_rollback", savepoint_rollback)

    def failing():
        change("b")
        broken.set()
        raise Refused("b")

    outcomes = one_batch([lambda: change("a").reason, failing, lambda: change("c").reason])
    assert reasons() == []
    assert isinstance(outcomes[0], BatchAborted) and isinstance(outcomes[2], BatchAborted)
    assert isinstance(outcomes[1], Refused)
    assert outcomes[0] is not outcomes[2]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a server connection to lose")
def test_a_connection_lost_in_a_piece_fails_the_whole_batch_and_nobody_hears_done():
    def killer():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    outcomes = one_batch([lambda: change("a").reason, killer, lambda: change("c").reason])
    assert reasons() == []
    assert all(isinstance(outcome, DatabaseError) for outcome in outcomes), outcomes


def test_work_that_swallows_a_database_error_is_not_reported_as_committed():
    """Alone in its batch (no savepoint), work that catches an error inside its own atomic block
    leaves a transaction that can only roll back: its caller hears BatchAborted, not success."""

    def swallowing():
        change("a")
        try:
            with transaction.atomic(savepoint=False):
                change("a2")
                raise Refused
        except Refused:
            pass
        return "done"

    with pytest.raises(BatchAborted):
        group_commit(swallowing)
    assert reasons() == []


def test_a_hook_failing_after_the_commit_leaves_every_piece_its_result():
    class Boom(Exception):
        pass

    hooks: list[str] = []

    def piece(reason: str, hook_fails: bool = False):
        def work():
            change(reason)

            def hook():
                if hook_fails:
                    raise Boom(reason)
                hooks.append(reason)

            transaction.on_commit(hook)
            return reason

        return work

    outcomes = one_batch([piece("a", hook_fails=True), piece("b"), piece("c")])
    assert reasons() == ["a", "b", "c"] and outcomes == ["a", "b", "c"]


def test_another_pieces_base_exception_reaches_the_others_as_batch_aborted():
    class Stop(BaseException):
        pass

    def stop():
        change("b")
        raise Stop

    outcomes = one_batch([lambda: change("a").reason, stop, lambda: change("c").reason])
    assert reasons() == []
    assert isinstance(outcomes[1], Stop)
    assert isinstance(outcomes[0], BatchAborted) and isinstance(outcomes[2], BatchAborted)


def test_a_failed_commit_gives_each_thread_an_exception_object_of_its_own(monkeypatch):
    wrapper = type(connections["default"])
    original = wrapper.commit
    failures = iter([False, True])  # the holder's batch commits, the next one fails

    def commit(self):
        if next(failures, False):
            raise OperationalError("disk I/O error")
        return original(self)

    monkeypatch.setattr(wrapper, "commit", commit)
    outcomes = one_batch([lambda: change("a"), lambda: change("b")])
    assert all(isinstance(o, OperationalError) and "disk I/O error" in str(o) for o in outcomes)
    assert outcomes[0] is not outcomes[1]
    assert reasons() == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite checks foreign keys at COMMIT only")
def test_a_bad_foreign_key_fails_its_own_piece_not_the_batch():
    def dangling():
        OmsSwitchChange.objects.create(enabled=True, reason="dangling", changed_by="test", user_id=10**9)

    outcomes = one_batch([lambda: change("a").reason, dangling, lambda: change("c").reason])
    assert outcomes[0] == "a" and outcomes[2] == "c" and isinstance(outcomes[1], IntegrityError)
    assert reasons() == ["a", "c"]
