"""The one close path. The sweep, a manual close, close-all, the admin action, the commands and
the live broker (which first gets the exchange's fill: oms/services/execution.py) all book closes
through `close_positions`.

A close is a conditional `UPDATE … WHERE status = 'open'` under a row lock, so a position closes
and its PnL is booked exactly once however many closes race. Each position's close is isolated:
a row whose close cannot be computed or stored (a zero quantity, an entry price of zero, a PnL that
does not fit its column) is reported in `failed` and never holds back the others. Log lines are
written after the commit, never for a close that was rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, DecimalException

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.models import Order, OrderPurpose, OrderStatus, Position, PositionStatus, Side, TradeSide
from oms.pnl import fee_for, gross_pnl, slipped_close_price
from oms.services.book import book_changed
from oms.services.figures import book_figures_record_closes
from oms.services.trips import trips_check_on_commit

logger = logging.getLogger("loms.oms")

CHUNK = 500  # positions per locked SELECT / executemany
CLOSE_FIELDS = ["status", "closed_at", "close_price", "fee", "pnl", "auto_close_reason"]
# The largest magnitude a money or price column (max_digits=28, decimal_places=10) holds.
COLUMN_LIMIT = Decimal("1e18")


class CloseRefused(Exception):
    """This position's close cannot be booked (its row holds values no close can be computed from)."""


@dataclass(frozen=True)
class CloseInstruction:
    """Close position `position_id` at market price `price` for `reason`; `level_fields` (exit-level
    columns a policy moved in the same step) are written with the close."""

    position_id: int
    price: Decimal
    reason: str
    level_fields: dict | None = None
    # An exchange close (demo/live): `price` is the fill's price and `fill_fee` its fee (no paper
    # slippage or fee rate), and `exit_order` the exchange's exit order, saved with the close.
    fill_fee: Decimal | None = None
    exit_order: Order | None = None
    # Void a stuck position (issue #12 §7): status cancelled, no price, no PnL, no exit order; the
    # same lock and conditional UPDATE, so a void racing the sweep or a close books exactly one of them.
    void: bool = False


@dataclass
class CloseBatchResult:
    closed: list[Position] = field(default_factory=list)
    not_open: list[int] = field(default_factory=list)  # closed or gone before we got to them
    failed: dict[int, str] = field(default_factory=dict)  # position id → why it could not be closed


def close_values(
    *,
    position: Position,
    price: Decimal,
    reason: str,
    now: datetime,
    fill_fee: Decimal | None = None,
    void: bool = False,
) -> dict:
    """The column values that close `position`: at market `price` on paper (slippage, exit fee at
    PAPER_FEE_RATE), or at an exchange fill's `price` with its `fill_fee`; net PnL. Raises
    `CloseRefused` when the row cannot be closed or the result does not fit its columns. `void`:
    cancelled, with no close price and no PnL (not a trade)."""
    if void:
        return {
            "status": PositionStatus.CANCELLED,
            "closed_at": max(now, position.created_at),
            "close_price": None,
            "fee": position.fee,
            "pnl": None,
            "auto_close_reason": reason,
        }
    if position.qty <= 0 or position.entry_price <= 0:
        raise CloseRefused(f"qty {position.qty} and entry price {position.entry_price} must both be positive")
    if not price > 0:
        raise CloseRefused(f"market price {price} is not positive")
    try:
        if fill_fee is None:
            close_price = slipped_close_price(side=position.side, price=price, slippage_bps=settings.PAPER_SLIPPAGE_BPS)
            exit_fee = fee_for(price=close_price, qty=position.qty, rate=settings.PAPER_FEE_RATE)
        else:
            close_price, exit_fee = price, fill_fee
        total_fee = position.fee + exit_fee
        pnl = (
            gross_pnl(side=position.side, entry_price=position.entry_price, close_price=close_price, qty=position.qty)
            - total_fee
        )
        values = {"close_price": close_price, "fee": total_fee, "pnl": pnl}
        for name, value in values.items():
            if not value.is_finite() or abs(value) >= COLUMN_LIMIT:
                raise CloseRefused(f"{name} {value} does not fit its column")
    except DecimalException as exc:
        raise CloseRefused(f"arithmetic error: {type(exc).__name__}") from None
    return {
        "status": PositionStatus.CLOSED,
        "closed_at": max(now, position.created_at),
        "close_price": close_price,
        "fee": total_fee,
        "pnl": pnl,
        "auto_close_reason": reason,
    }


def exit_order_for(position: Position) -> Order:
    """The filled market order that records a close (not saved)."""
    return Order(
        position=position,
        exchange=position.exchange,
        symbol=position.symbol,
        side=position.side,
        qty=position.qty,
        price=position.close_price,
        status=OrderStatus.FILLED,
        purpose=OrderPurpose.EXIT,
        trade_side=TradeSide.SELL if position.side == Side.LONG else TradeSide.BUY,
        created_at=position.closed_at,
    )


def close_positions(instructions: Iterable[CloseInstruction], *, now: datetime | None = None) -> CloseBatchResult:
    """Close each instructed position that is still open; one transaction, one savepoint a chunk.

    May run inside the caller's transaction (the sweep holds its lease fence in it). A chunk whose
    statements fail is retried one position at a time, so only the position at fault stays open.
    """
    now = now or timezone.now()
    by_id = {instruction.position_id: instruction for instruction in instructions}
    result = CloseBatchResult()
    ids = list(by_id)
    with transaction.atomic():
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            try:
                with transaction.atomic():
                    _close_chunk(chunk, by_id, now, result)
            except DatabaseError:
                for position_id in chunk:  # find the row at fault: each in a savepoint of its own
                    try:
                        with transaction.atomic():
                            _close_chunk([position_id], by_id, now, result)
                    except DatabaseError as exc:
                        result.failed[position_id] = f"database refused the close: {_first_line(exc)}"
        _report_on_commit(result)
        if result.closed:
            book_changed()
            book_figures_record_closes(result.closed)
            trips_check_on_commit()  # loss limits may turn the switch off once these closes commit
    return result


def _close_chunk(ids: list[int], by_id: dict[int, CloseInstruction], now: datetime, result: CloseBatchResult) -> None:
    """Lock the still-open rows of `ids`, compute each close, write them; the caller's savepoint
    undoes all of it if a statement fails. `result` is changed only once every statement passed."""
    batch: list[Position] = []
    failed: dict[int, str] = {}
    fields = set(CLOSE_FIELDS)
    # Lock the rows that are still open (on SQLite the IMMEDIATE transaction holds the database
    # lock already): a close that got there first is not selected; a later one waits for our commit.
    locked = Position.objects.select_for_update().open().filter(pk__in=ids)
    for position in locked:
        instruction = by_id[position.pk]
        try:
            values = close_values(
                position=position,
                price=instruction.price,
                reason=instruction.reason,
                now=now,
                fill_fee=instruction.fill_fee,
                void=instruction.void,
            )
        except CloseRefused as exc:
            failed[position.pk] = str(exc)
            continue
        if instruction.level_fields:
            values.update(instruction.level_fields)
            fields.update(instruction.level_fields)
        for name, value in values.items():
            setattr(position, name, value)
        batch.append(position)
    if batch:
        updated = _update_still_open(batch, sorted(fields))
        if updated not in (len(batch), -1):  # cannot happen under the lock; never book a close twice if it did
            raise RuntimeError(f"{len(batch) - updated} positions changed under the close's lock")
        orders = [_exit_order(p, by_id[p.pk]) for p in batch if not by_id[p.pk].void]
        Order.objects.bulk_create([o for o in orders if o.pk is None], batch_size=CHUNK)
        for order in orders:  # an exchange exit order recorded `submitted` before it was sent
            if order.pk is not None:
                order.save()
    done = {p.pk for p in batch} | set(failed)
    result.closed.extend(batch)
    result.failed.update(failed)
    result.not_open.extend(i for i in ids if i not in done)


def _exit_order(position: Position, instruction: CloseInstruction) -> Order:
    if instruction.exit_order is None:
        return exit_order_for(position)
    instruction.exit_order.position = position
    return instruction.exit_order


def _update_still_open(positions: list[Position], fields: list[str]) -> int:
    """`UPDATE … WHERE id = %s AND status = 'open'` once per position, as one executemany (Django's
    bulk_update builds CASE expressions that cost seconds for 10 000 rows). Returns rows changed."""
    meta = Position._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(column.column)} = %s" for column in columns)
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {assignments} "
        f"WHERE {quote(meta.pk.column)} = %s AND {quote(meta.get_field('status').column)} = %s"
    )
    rows = [
        [column.get_db_prep_save(getattr(p, column.attname), connection) for column in columns]
        + [p.pk, PositionStatus.OPEN.value]
        for p in positions
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
        return cursor.rowcount


def _report_on_commit(result: CloseBatchResult) -> None:
    """Log each close and each failure once the transaction has committed."""
    closed, failed = list(result.closed), dict(result.failed)

    def report() -> None:
        for position in closed:
            log_position_closed(position)
        for position_id, why in failed.items():
            log_event(logger, "position_close_failed", level=logging.ERROR, position_id=position_id, error=why)

    transaction.on_commit(report, robust=True)


def log_position_closed(position: Position) -> None:
    log_event(
        logger,
        "position_closed",
        position_id=position.pk,
        symbol=position.symbol,
        side=position.side,
        reason=position.auto_close_reason,
        close_price=position.close_price,
        pnl=position.pnl,
        fee=position.fee,
    )


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
