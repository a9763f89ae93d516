"""The intake's hand-built SQL (lomsite/rowsql.py) stores and reads exactly what the ORM would, and
SQLite writers queue for their turn (lomsite/sqlite/queue.py)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import OperationalError, connection, models, transaction
from django.db.models import Count, F, Q, Sum
from django.forms.models import model_to_dict
from django.test.utils import isolate_apps
from django.utils import timezone

from lomsite.rowsql import row_insert, row_update
from lomsite.sqlite.queue import write_turn
from oms.models import BookVersion, Order, OrderPurpose, Position, PositionStatus, Signal, SignalOutcome
from oms.selectors import signal_by_dedupe_key
from oms.services.positions import exposure_snapshot
from oms.tests.factories import closed_position, open_position
from risk.limits import RiskLimits

pytestmark = pytest.mark.django_db


CREATED = timezone.now() - timedelta(microseconds=7)


def _position(**extra) -> Position:
    return Position(
        exchange="bitget",
        symbol="ETHUSDT",
        side="short",
        qty=Decimal("0.0123456789"),
        entry_price=Decimal("2345.6789012345"),
        tp_price=Decimal("2200.5"),
        sl_price=None,
        fee=Decimal("0.0000000001"),
        strategy="s",
        timeframe_min=15,
        created_at=CREATED,
        **extra,
    )


def _stored(instance) -> dict:
    return model_to_dict(type(instance).objects.get(pk=instance.pk))


def _without_pk(values: dict) -> dict:
    return {name: value for name, value in values.items() if name != "id"}


def test_a_row_inserted_by_hand_built_sql_is_the_row_the_orm_inserts():
    by_hand = row_insert(_position())
    by_orm = _position()
    by_orm.save()
    assert by_hand.pk and by_hand.pk != by_orm.pk
    assert _without_pk(_stored(by_hand)) == _without_pk(_stored(by_orm))
    assert not by_hand._state.adding  # saved: a later save() updates it
    by_hand.strategy = "changed"
    by_hand.save()
    assert Position.objects.filter(pk=by_hand.pk, strategy="changed").count() == 1
    assert Position.objects.count() == 2


def test_json_foreign_keys_and_defaults_are_stored_as_the_orm_stores_them():
    position = row_insert(_position())
    order = row_insert(
        Order(
            position=position,
            exchange="bitget",
            symbol="ETHUSDT",
            side="short",
            qty=position.qty,
            price=position.entry_price,
            purpose=OrderPurpose.ENTRY,
        )
    )
    payload = {"symbol": "ETHUSDT", "nested": {"list": [1, 2.5, "ü"]}, "none": None}
    signal = row_insert(
        Signal(
            payload=payload,
            symbol="ETHUSDT",
            side="SELL",
            outcome=SignalOutcome.OPENED,
            position=position,
            response={"ok": True},
            dedupe_key="k-1",
        )
    )
    stored_order = Order.objects.get(pk=order.pk)
    assert stored_order.position_id == position.pk and stored_order.status == Order._meta.get_field("status").default
    stored_signal = Signal.objects.get(pk=signal.pk)
    assert stored_signal.payload == payload and stored_signal.response == {"ok": True}
    assert stored_signal.received_at is not None and stored_signal.position_id == position.pk


def test_a_duplicate_unique_key_raises_djangos_integrity_error():
    from django.db import IntegrityError

    row_insert(Signal(payload={}, outcome=SignalOutcome.OPENED, dedupe_key="same"))
    with pytest.raises(IntegrityError), transaction.atomic():
        row_insert(Signal(payload={}, outcome=SignalOutcome.OPENED, dedupe_key="same"))


def test_the_row_by_its_unique_key_and_the_one_field_update():
    assert signal_by_dedupe_key("absent") is None
    first = Signal.objects.create(payload={}, outcome=SignalOutcome.OPENED, dedupe_key="a")
    Signal.objects.create(payload={}, outcome=SignalOutcome.REJECTED, dedupe_key="b")
    assert signal_by_dedupe_key("a").pk == first.pk
    BookVersion.objects.update_or_create(pk=1, defaults={"token": "old"})
    assert row_update(BookVersion, 1, "token", "new") == 1
    assert row_update(BookVersion, 2, "token", "new") == 0
    assert BookVersion.objects.get(pk=1).token == "new"


def test_the_exposure_read_by_hand_built_sql_equals_the_orm_aggregate():
    now = timezone.now()
    for index, (symbol, entry, qty) in enumerate(
        [
            ("BTCUSDT", "65432.1098765432", "0.0012345678"),
            ("BTCUSDT", "0.0000012345", "98765.4321"),
            ("ETHUSDT", "3000.3", "1.7"),
        ]
    ):
        open_position(symbol=symbol, entry=entry, qty=qty, side="long" if index % 2 else "short")
    closed_position(pnl="3", symbol="SOLUSDT")
    orm = Position.objects.filter(status=PositionStatus.OPEN).aggregate(
        total=Count("id"), symbol=Count("id", filter=Q(symbol="BTCUSDT")), notional=Sum(F("entry_price") * F("qty"))
    )
    snapshot = exposure_snapshot(symbol="BTCUSDT", limits=RiskLimits(), now=now)
    assert (snapshot.total_open, snapshot.symbol_open, snapshot.total_open_notional) == (3, 2, orm["notional"])
    empty = exposure_snapshot(symbol="XRPUSDT", limits=RiskLimits(), now=now)
    assert empty.symbol_open == 0 and isinstance(empty.total_open_notional, Decimal)


@pytest.mark.django_db(transaction=True)
def test_sqlite_writers_take_turns_and_a_writer_past_the_lock_timeout_gets_database_is_locked(settings):
    if connection.vendor != "sqlite":
        pytest.skip("the write turn is SQLite's")
    settings.DB_LOCK_TIMEOUT_SEC = 1
    events: list[str] = []
    holding = threading.Event()

    def first_writer() -> None:
        with write_turn():
            holding.set()
            events.append("first in")
            time.sleep(0.3)
            events.append("first out")

    thread = threading.Thread(target=first_writer)
    thread.start()
    holding.wait(5)
    with write_turn():
        events.append("second in")
    thread.join()
    assert events == ["first in", "first out", "second in"]

    def slow_writer() -> None:
        with write_turn():
            holding.set()
            time.sleep(1.5)

    holding.clear()
    thread = threading.Thread(target=slow_writer)
    thread.start()
    holding.wait(5)
    with pytest.raises(OperationalError, match="database is locked"), write_turn():
        pass
    thread.join()


def test_inside_a_transaction_the_write_turn_is_not_taken_again():
    # pytest-django runs this test inside a transaction: the turn would be taken too late to matter.
    assert connection.in_atomic_block
    with write_turn(), write_turn():
        assert Position.objects.count() == 0


def test_a_row_read_by_hand_built_sql_is_the_instance_the_orm_loads():
    from django.contrib.auth.models import User

    from apitokens.models import ApiToken
    from lomsite.rowsql import row_by
    from oms.models import OmsControl, StrategyControl

    OmsControl.objects.update_or_create(
        pk=1, defaults={"enabled": False, "reason": "r", "epoch": "e2", "epoch_started_at": CREATED}
    )
    strategy = StrategyControl.objects.create(
        strategy="s1", enabled=False, max_open_positions=3, max_exposure_usdt=Decimal("1234.5")
    )
    user = User.objects.create_user("bot1", password=None, is_staff=True)
    ApiToken.issue(user)
    token = ApiToken.objects.get(user=user)
    position = row_insert(_position())
    signal = Signal.objects.create(
        payload={"price": 1.5, "nested": {"a": [1, None]}},
        outcome=SignalOutcome.OPENED,
        dedupe_key="k",
        position=position,
    )
    for model, field, value, pk in (
        (OmsControl, "id", 1, 1),
        (StrategyControl, "strategy", "s1", strategy.pk),
        (User, "id", user.pk, user.pk),
        (ApiToken, "key_hash", token.key_hash, token.pk),
        (Position, "id", position.pk, position.pk),
        (Signal, "dedupe_key", "k", signal.pk),
    ):
        with transaction.atomic():
            by_hand = row_by(model, field, value, lock=True)
        by_orm = model.objects.get(pk=pk)
        for column in model._meta.concrete_fields:
            read, loaded = getattr(by_hand, column.attname), getattr(by_orm, column.attname)
            assert (read, type(read)) == (loaded, type(loaded)), (model.__name__, column.attname)
        assert by_hand._state.adding is False and by_hand._state.db == by_orm._state.db
    assert row_by(StrategyControl, "strategy", "absent") is None
    assert row_by(OmsControl, "id", 1).epoch_started_at == CREATED


@pytest.mark.django_db(transaction=True)
@isolate_apps("oms")
def test_a_foreign_key_read_by_hand_built_sql_converts_as_the_field_it_points_to():
    from lomsite.rowsql import row_by

    class Parent(models.Model):
        id = models.UUIDField(primary_key=True, default=uuid.uuid4)

        class Meta:
            app_label = "oms"
            db_table = "test_rowsql_parent"

        def __str__(self) -> str:
            return str(self.id)

    class Child(models.Model):
        parent = models.ForeignKey(Parent, on_delete=models.CASCADE)
        key = models.CharField(max_length=8, unique=True)

        class Meta:
            app_label = "oms"
            db_table = "test_rowsql_child"

        def __str__(self) -> str:
            return self.key

    with connection.schema_editor() as editor:
        editor.create_model(Parent)
        editor.create_model(Child)
    try:
        child = Child.objects.create(parent=Parent.objects.create(), key="k")
        by_hand, by_orm = row_by(Child, "key", "k"), Child.objects.get(pk=child.pk)
        assert (by_hand.parent_id, type(by_hand.parent_id)) == (by_orm.parent_id, uuid.UUID)
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(Child)
            editor.delete_model(Parent)


@pytest.mark.django_db(transaction=True)
def test_a_lock_file_that_cannot_be_opened_leaves_the_writer_to_sqlites_own_lock(monkeypatch, caplog):
    import os

    if connection.vendor != "sqlite":
        pytest.skip("the write turn is SQLite's")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", refuse)
    with write_turn(), transaction.atomic():
        BookVersion.objects.update_or_create(pk=1, defaults={"token": "written"})
    with write_turn():
        pass
    assert BookVersion.objects.get(pk=1).token == "written"
    assert [r for r in caplog.records if "write_queue_unavailable" in r.getMessage()]
