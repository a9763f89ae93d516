"""The one close path. The sweep, a manual close, close-all, the admin action, the commands and
the live broker (which first gets the exchange's fill: oms/services/execution.py) all book closes
through `close_positions`.

A close is a conditional `UPDATE … WHERE status = 'open'` under a row lock, so a position closes
and its PnL is booked exactly once however many closes race. Each position's close is isolated:
a row whose close cannot be computed or stored (a zero quantity, an entry price of zero, a PnL that
does not fit its column) is reported in `failed` and never holds back the others. Log lines are
written after the commit, never for a close that was rolled back.

A partial exit (issue #12 §2: an exit signal's `fraction`, the first take profit of `tp_scale_out`,
an exchange fill of part of a position) takes the same lock: it closes a share of the quantity
still open at that moment, so two partial exits at once never close more than the position holds,
and one that would leave nothing open is the full close. It lowers `qty`, adds the exit's gross
PnL to `realized_gross_pnl` and its fee to `fee`, records one exit order (with its net PnL in
`partial_exit_pnl`, which the daily-loss trip counts while the position stays open), and books no
trade: the final close books the whole trade's PnL once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, DecimalException

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
PARTIAL_FIELDS = ["qty", "closed_qty", "realized_gross_pnl", "fee"]
QTY_QUANTUM = Decimal("1e-10")  # the precision of quantity columns (decimal_places=10)
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
    # A partial exit: close this share of the quantity still open when the row is locked (`fraction`,
    # 0 < fraction ≤ 1), or this quantity (`qty`: an exchange fill). Neither: the whole position.
    fraction: Decimal | None = None
    qty: Decimal | None = None

    def exit_qty(self, open_qty: Decimal) -> Decimal:
        """The quantity this instruction closes out of `open_qty` (at most all of it)."""
        if self.fraction is not None:
            wanted = (open_qty * self.fraction).quantize(QTY_QUANTUM, rounding=ROUND_DOWN)
        elif self.qty is not None:
            wanted = self.qty
        else:
            return open_qty
        return min(wanted, open_qty)


@dataclass
class CloseBatchResult:
    closed: list[Position] = field(default_factory=list)
    partially_closed: list[Position] = field(default_factory=list)  # still open, with less qty
    exited: dict[int, Decimal] = field(default_factory=dict)  # position id → the quantity closed now
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
    PAPER_FEE_RATE), or at an exchange fill's `price` with its `fill_fee`; the trade's net PnL
    (partial exits included). Raises `CloseRefused` when the row cannot be closed or the result
    does not fit its columns. `void`: cancelled, with no close price and no PnL (not a trade)."""
    if void:
        return {
            "status": PositionStatus.CANCELLED,
            "closed_at": max(now, position.created_at),
            "close_price": None,
            "fee": position.fee,
            "pnl": None,
            "auto_close_reason": reason,
        }
    close_price, exit_fee, gross = _exit_fill(position, price, position.qty, fill_fee)
    total_fee = position.fee + exit_fee
    values = {"close_price": close_price, "fee": total_fee, "pnl": position.realized_gross_pnl + gross - total_fee}
    _check_fit(values)
    return {
        "status": PositionStatus.CLOSED,
        "closed_at": max(now, position.created_at),
        **values,
        "auto_close_reason": reason,
    }


def partial_exit_values(
    *, position: Position, price: Decimal, qty: Decimal, fill_fee: Decimal | None = None
) -> tuple[dict, Decimal]:
    """The column values after closing `qty` (less than the open quantity) of `position`, and the
    exit's price; priced as `close_values` prices a close. The position stays open."""
    close_price, exit_fee, gross = _exit_fill(position, price, qty, fill_fee)
    values = {
        "qty": position.qty - qty,
        "closed_qty": position.closed_qty + qty,
        "realized_gross_pnl": position.realized_gross_pnl + gross,
        "fee": position.fee + exit_fee,
    }
    _check_fit({**values, "close_price": close_price})
    return values, close_price


def _exit_fill(
    position: Position, price: Decimal, qty: Decimal, fill_fee: Decimal | None
) -> tuple[Decimal, Decimal, Decimal]:
    """(fill price, exit fee, gross PnL) of closing `qty` of `position` at market `price` (paper:
    slippage and PAPER_FEE_RATE) or at an exchange fill (`fill_fee` given)."""
    if position.qty <= 0 or position.entry_price <= 0:
        raise CloseRefused(f"qty {position.qty} and entry price {position.entry_price} must both be positive")
    if not qty > 0:
        raise CloseRefused(f"exit quantity {qty} is not positive")
    if not price > 0:
        raise CloseRefused(f"market price {price} is not positive")
    try:
        if fill_fee is None:
            close_price = slipped_close_price(side=position.side, price=price, slippage_bps=settings.PAPER_SLIPPAGE_BPS)
            exit_fee = fee_for(price=close_price, qty=qty, rate=settings.PAPER_FEE_RATE)
        else:
            close_price, exit_fee = price, fill_fee
        gross = gross_pnl(side=position.side, entry_price=position.entry_price, close_price=close_price, qty=qty)
        _check_fit({"close_price": close_price, "fee": exit_fee, "pnl": gross})
    except DecimalException as exc:
        raise CloseRefused(f"arithmetic error: {type(exc).__name__}") from None
    return close_price, exit_fee, gross


def _check_fit(values: dict) -> None:
    try:
        for name, value in values.items():
            if not value.is_finite() or abs(value) >= COLUMN_LIMIT:
                raise CloseRefused(f"{name} {value} does not fit its column")
    except DecimalException as exc:
        raise CloseRefused(f"arithmetic error: {type(exc).__name__}") from None


STOP_FIELDS = ("sl_price", "dynamic_sl_price")


def tighter_stop(side: str, first: Decimal | None, second: Decimal | None) -> Decimal | None:
    """The tighter of two stops (the higher for a long, the lower for a short); None is no stop."""
    if first is None or second is None:
        return second if first is None else first
    return max(first, second) if side == Side.LONG else min(first, second)


def never_looser(position: Position, level_fields: dict) -> dict:
    """`level_fields` a policy decided from values read earlier, with each stop no looser than the
    row holds now (a stop a person or a signal moved meanwhile stays)."""
    fields = dict(level_fields)
    for name in STOP_FIELDS:
        if name in fields:
            fields[name] = tighter_stop(position.side, getattr(position, name), fields[name])
    return fields


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
        close_reason=position.auto_close_reason,
        created_at=position.closed_at,
    )


def partial_exit_order_for(position: Position, *, qty: Decimal, price: Decimal, reason: str, now: datetime) -> Order:
    """The filled market order that records a partial exit (not saved)."""
    return Order(
        position=position,
        exchange=position.exchange,
        symbol=position.symbol,
        side=position.side,
        qty=qty,
        price=price,
        status=OrderStatus.FILLED,
        purpose=OrderPurpose.EXIT,
        trade_side=TradeSide.SELL if position.side == Side.LONG else TradeSide.BUY,
        close_reason=reason,
        created_at=max(now, position.created_at),
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
        if result.closed or result.partially_closed:
            book_changed()
            trips_check_on_commit()  # loss limits may turn the switch off once these exits commit
        if result.closed:
            book_figures_record_closes(result.closed)
    return result


def _close_chunk(ids: list[int], by_id: dict[int, CloseInstruction], now: datetime, result: CloseBatchResult) -> None:
    """Lock the still-open rows of `ids`, compute each close or partial exit, write them; the
    caller's savepoint undoes all of it if a statement fails. `result` is changed only once every
    statement passed."""
    closes: list[Position] = []
    partials: list[tuple[Position, Decimal]] = []  # (position with its new values, qty open before)
    orders: list[Order] = []
    exited: dict[int, Decimal] = {}
    failed: dict[int, str] = {}
    close_fields, partial_fields = set(CLOSE_FIELDS), set(PARTIAL_FIELDS)
    # Lock the rows that are still open (on SQLite the IMMEDIATE transaction holds the database
    # lock already): a close that got there first is not selected; a later one waits for our commit.
    locked = Position.objects.select_for_update().open().filter(pk__in=ids)
    for position in locked:
        instruction = by_id[position.pk]
        open_qty = position.qty
        exit_qty = open_qty if instruction.void else instruction.exit_qty(open_qty)
        try:
            if exit_qty < open_qty:
                values, exit_price = partial_exit_values(
                    position=position, price=instruction.price, qty=exit_qty, fill_fee=instruction.fill_fee
                )
                exit_net = (values["realized_gross_pnl"] - position.realized_gross_pnl) - (values["fee"] - position.fee)
            else:
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
        fields = partial_fields if exit_qty < open_qty else close_fields
        if instruction.level_fields:
            levels = never_looser(position, instruction.level_fields)
            values.update(levels)
            fields.update(levels)
        for name, value in values.items():
            setattr(position, name, value)
        exited[position.pk] = exit_qty
        if exit_qty < open_qty:
            partials.append((position, open_qty))
            order = instruction.exit_order or partial_exit_order_for(
                position, qty=exit_qty, price=exit_price, reason=instruction.reason, now=now
            )
            order.partial_exit_pnl = exit_net
        elif instruction.void:
            closes.append(position)
            continue
        else:
            closes.append(position)
            order = instruction.exit_order or exit_order_for(position)
        order.position = position
        order.close_reason = order.close_reason or instruction.reason  # an exchange order's own reason
        orders.append(order)
    _update_still_open([(p, None) for p in closes], sorted(close_fields))
    _update_still_open(partials, sorted(partial_fields))
    Order.objects.bulk_create([o for o in orders if o.pk is None], batch_size=CHUNK)
    for order in orders:  # an exchange exit order recorded `submitted` before it was sent
        if order.pk is not None:
            order.save()
    done = {p.pk for p in closes} | {p.pk for p, _ in partials} | set(failed)
    result.closed.extend(closes)
    result.partially_closed.extend(p for p, _ in partials)
    result.exited.update({pk: qty for pk, qty in exited.items() if pk not in failed})
    result.failed.update(failed)
    result.not_open.extend(i for i in ids if i not in done)


def _update_still_open(rows: list[tuple[Position, Decimal | None]], fields: list[str]) -> None:
    """`UPDATE … WHERE id = %s AND status = 'open' [AND qty = %s]` once per position, as one
    executemany (Django's bulk_update builds CASE expressions that cost seconds for 10 000 rows).
    A row given with the quantity it had when locked is updated only if that still holds."""
    if not rows:
        return
    meta = Position._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    qty_field = meta.get_field("qty")
    assignments = ", ".join(f"{quote(column.column)} = %s" for column in columns)
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {assignments} "
        f"WHERE {quote(meta.pk.column)} = %s AND {quote(meta.get_field('status').column)} = %s"
    )
    if rows[0][1] is not None:
        sql += f" AND {quote(qty_field.column)} = %s"
    params = []
    for position, open_qty in rows:
        row = [column.get_db_prep_save(getattr(position, column.attname), connection) for column in columns]
        row += [position.pk, PositionStatus.OPEN.value]
        if open_qty is not None:
            row.append(qty_field.get_db_prep_save(open_qty, connection))
        params.append(row)
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
        updated = cursor.rowcount
    if updated not in (len(rows), -1):  # cannot happen under the lock; never book a close twice if it did
        raise RuntimeError(f"{len(rows) - updated} positions changed under the close's lock")


def _report_on_commit(result: CloseBatchResult) -> None:
    """Log each close and each failure once the transaction has committed."""
    closed, partial, failed = list(result.closed), list(result.partially_closed), dict(result.failed)

    def report() -> None:
        for position in partial:
            log_event(
                logger,
                "position_partially_closed",
                position_id=position.pk,
                symbol=position.symbol,
                side=position.side,
                qty_open=position.qty,
                closed_qty=position.closed_qty,
                realized_gross_pnl=position.realized_gross_pnl,
                fee=position.fee,
            )
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
