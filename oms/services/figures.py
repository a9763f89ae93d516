"""The book figures, maintained as trades happen: no request ever recomputes the whole book.

`book_figures_record_open(positions)` and `book_figures_record_closes(positions)` are called in the
transaction that opens or closes the positions (next to `book_changed()`), so the figures commit
or roll back with the trades. They keep `BookFigure` rows:

- one ALL_TIME row per *kind* — every subset of the /stats equality filters (`DIMS`: epoch,
  symbol, strategy, exchange) — and per value of those dimensions: position and open counts,
  closed-trade counts and sums, first/last opening and last closing time, and the `Drawdown`
  summary (oms.metrics) of its closed trades in (closed_at, id) order;
- one row per UTC closing day for the kinds of `DAY_KINDS` (whole book, per epoch): the same
  closed-trade figures for that day (group_by=day) and its drawdown summary.

A close appends to a row's drawdown summary when it comes after the row's last close in
(closed_at, id) order — the usual case, closed_at = max(now, created_at). A close that sorts
earlier (a position created in the future, two transactions committing out of order) makes the
row recompute its summary exactly: a day row from that day's closes, an ALL_TIME row from its
day rows or, for the kinds without day rows, from its own closes. Missing rows are created first
(INSERT … ON CONFLICT DO NOTHING, holding no row lock), then all are locked in `rid` order
(SELECT … FOR UPDATE on PostgreSQL; SQLite serialises writers), so concurrent opens and closes
cannot lose an update or deadlock on them. Money is kept in integer units of 1e-10 USDT
(the positions' own precision), exact on SQLite and PostgreSQL.

`figures_stats(filters, group_by)` answers /stats from a few rows when `figures_can_serve`:
no opening-time range (since/until), and for group_by=day only the whole-book or epoch filter.
Everything else goes the SQL way (oms.selectors.position_stats). `book_figures_rebuild()`
recomputes every row from the positions (manage.py rebuild_book_figures, migration 0012,
after a restore).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from itertools import accumulate, combinations

from django.db import connection, connections, transaction
from django.db.models import DateTimeField, Func, QuerySet, Subquery

from oms.metrics import ZERO, Drawdown, Sums, downsample, stats_figures
from oms.models import BookFigure, CloseReason, Epoch, Position, PositionStatus

DIMS = ("account_label", "symbol", "strategy", "exchange")
KINDS = tuple(",".join(c) for n in range(len(DIMS) + 1) for c in combinations(DIMS, n))
DAY_KINDS = ("", "account_label")
ALL_TIME = BookFigure.ALL_TIME
REASON_FIELDS = {
    CloseReason.TP: "tp_count",
    CloseReason.SL: "sl_count",
    CloseReason.TRAILING_SL: "trailing_sl_count",
    CloseReason.MANUAL: "manual_count",
    CloseReason.TIMEOUT: "timeout_count",
    CloseReason.PANIC: "panic_count",
    CloseReason.MANUAL_PRICE: "manual_price_count",
    # An exchange-side TP or SL (demo/live) counts as one (oms.models TAKE_PROFIT/STOP_LOSS_REASONS).
    CloseReason.EXCHANGE_TP: "tp_count",
    CloseReason.EXCHANGE_SL: "sl_count",
}
REASON_COUNTS = list(dict.fromkeys(REASON_FIELDS.values()))  # each counter once
COUNTS = [
    "positions",
    "open_positions",
    "trades",
    "wins",
    "losses",
    *REASON_COUNTS,
    "voided_count",
    "pnl",
    "fees",
    "gross_win",
    "gross_loss",
]
UPDATE_FIELDS = [
    *COUNTS,
    "peak",
    "trough",
    "drawdown",
    "first_created_at",
    "last_created_at",
    "last_closed_at",
    "last_id",
]
FACT_FIELDS = ("id", "status", "created_at", "closed_at", "pnl", "fee", "auto_close_reason", *DIMS)
CHUNK = 2000


def units(value: Decimal | None) -> int:
    return int((value or ZERO).scaleb(10).to_integral_value())


def money(value: int) -> Decimal:
    return Decimal(value).scaleb(-10) if value else ZERO


@dataclass(frozen=True)
class Fact:
    """What the figures need of one position."""

    id: int
    status: str
    created_at: datetime
    closed_at: datetime | None
    pnl: Decimal | None
    fee: Decimal
    auto_close_reason: str
    account_label: str
    symbol: str
    strategy: str
    exchange: str

    @property
    def order(self) -> tuple[datetime, int]:
        return (self.closed_at, self.id)

    @property
    def closed(self) -> bool:
        return self.status == PositionStatus.CLOSED

    @property
    def voided(self) -> bool:
        """Voided by an operator (issue #12 §7): counted as a position and as voided, never as a trade."""
        return self.status == PositionStatus.CANCELLED and self.auto_close_reason == CloseReason.VOID


def _day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def _rid(kind: str, values: tuple[str, ...], day: date) -> str:
    return "\x1f".join((kind, *values, day.isoformat()))


def _dims_of(kind: str) -> tuple[str, ...]:
    return tuple(kind.split(",")) if kind else ()


def _row_keys(fact: Fact) -> list[tuple[str, str, dict, date]]:
    """(rid, kind, dimension values, day) of the rows a position counts in (ALL_TIME rows only)."""
    keys = []
    for kind in KINDS:
        dims = {name: getattr(fact, name) for name in _dims_of(kind)}
        keys.append((_rid(kind, tuple(dims.values()), ALL_TIME), kind, dims, ALL_TIME))
    return keys


def _day_keys(fact: Fact) -> list[tuple[str, str, dict, date]]:
    day = _day(fact.closed_at)
    keys = []
    for kind in DAY_KINDS:
        dims = {name: getattr(fact, name) for name in _dims_of(kind)}
        keys.append((_rid(kind, tuple(dims.values()), day), kind, dims, day))
    return keys


def _add_close(row, fact: Fact) -> None:
    """Add a closed trade's counts and sums to `row` (not its drawdown: see _append)."""
    pnl = units(fact.pnl)
    row.trades += 1
    row.wins += pnl > 0
    row.losses += pnl < 0
    row.pnl += pnl
    row.fees += units(fact.fee)
    row.gross_win += max(pnl, 0)
    row.gross_loss += min(pnl, 0)
    reason = REASON_FIELDS.get(fact.auto_close_reason)
    if reason:
        setattr(row, reason, getattr(row, reason) + 1)


def _add_created(row, created: datetime) -> None:
    row.first_created_at = min(row.first_created_at or created, created)
    row.last_created_at = max(row.last_created_at or created, created)


def _summary(row: BookFigure) -> Drawdown:
    return Drawdown(
        trades=row.trades,
        total=money(row.pnl),
        peak=money(row.peak),
        trough=money(row.trough),
        drawdown=money(row.drawdown),
    )


def _set_summary(row: BookFigure, summary: Drawdown, last: tuple[datetime, int] | None) -> None:
    row.peak, row.trough, row.drawdown = units(summary.peak), units(summary.trough), units(summary.drawdown)
    row.last_closed_at, row.last_id = last if last else (None, None)


def _save(rows: list[BookFigure]) -> None:
    """UPDATE the rows' figures, one executemany (bulk_update's CASE expressions cost far more)."""
    if not rows:
        return
    connection = connections[BookFigure.objects.db]
    fields = [BookFigure._meta.get_field(name) for name in UPDATE_FIELDS]
    quote = connection.ops.quote_name
    sql = (
        f"UPDATE {quote(BookFigure._meta.db_table)} SET "
        + ", ".join(f"{quote(field.column)} = %s" for field in fields)
        + " WHERE id = %s"
    )
    params = [
        [field.get_db_prep_save(getattr(row, field.attname), connection) for field in fields] + [row.pk] for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _locked_rows(keys: dict[str, tuple[str, dict, date]]) -> dict[str, BookFigure]:
    """The rows of `keys` (created when missing), locked in rid order."""
    rids = sorted(keys)

    def load(wanted: list[str]) -> dict[str, BookFigure]:
        found: dict[str, BookFigure] = {}
        for start in range(0, len(wanted), CHUNK):
            query = BookFigure.objects.select_for_update().filter(rid__in=wanted[start : start + CHUNK]).order_by("rid")
            found.update((row.rid, row) for row in query)
        return found

    existing: set[str] = set()
    for start in range(0, len(rids), CHUNK):  # not locked yet: creating a row never waits while holding one
        existing.update(BookFigure.objects.filter(rid__in=rids[start : start + CHUNK]).values_list("rid", flat=True))
    missing = [rid for rid in rids if rid not in existing]
    if missing:  # new rows (a new symbol, a new day); a concurrent creator of the same row wins
        BookFigure.objects.bulk_create(
            [BookFigure(rid=rid, kind=keys[rid][0], day=keys[rid][2], **keys[rid][1]) for rid in missing],
            ignore_conflicts=True,
        )
    return load(rids)


def _closes_of(row: BookFigure, *, day: date | None) -> Iterable[tuple[Decimal, datetime, int]]:
    """(pnl, closed_at, id) of the closed positions a row counts, in closing order, from the positions."""
    query = Position.objects.closed().filter(**{name: getattr(row, name) for name in _dims_of(row.kind)})
    if day is not None:
        start = datetime.combine(day, time.min, tzinfo=UTC)
        query = query.filter(closed_at__gte=start, closed_at__lt=start + timedelta(days=1))
    return query.order_by("closed_at", "id").values_list("pnl", "closed_at", "id").iterator(chunk_size=5000)


def _recompute_from_positions(row: BookFigure) -> None:
    summary, last = Drawdown(), None
    for pnl, closed_at, pk in _closes_of(row, day=None if row.day == ALL_TIME else row.day):
        summary, last = summary.add(pnl), (closed_at, pk)
    _set_summary(row, summary, last)


def _recompute_from_days(row: BookFigure) -> None:
    days = (
        BookFigure.objects.filter(kind=row.kind, trades__gt=0, **{n: getattr(row, n) for n in _dims_of(row.kind)})
        .exclude(day=ALL_TIME)
        .order_by("day")
    )
    summary, last = Drawdown(), None
    for day_row in days:
        summary = summary.then(_summary(day_row))
        last = (day_row.last_closed_at, day_row.last_id)
    _set_summary(row, summary, last)


class _Delta:
    """Counts and sums of a batch for one group of positions (added to every row the group counts in)."""

    __slots__ = (*COUNTS, "first_created_at", "last_created_at")

    def __init__(self) -> None:
        for field in COUNTS:
            setattr(self, field, 0)
        self.first_created_at = self.last_created_at = None

    def add_to(self, row: BookFigure) -> None:
        for field in COUNTS:
            setattr(row, field, getattr(row, field) + getattr(self, field))
        if self.first_created_at is not None:
            _add_created(row, self.first_created_at)
            _add_created(row, self.last_created_at)


def _fold(pnls: list[int]) -> tuple[int, int, int, int]:
    """(total, peak, trough, drawdown) of a run of trades in units: oms.metrics.Drawdown.of in integers."""
    total = peak = trough = drawdown = 0
    for pnl in pnls:
        total += pnl
        if total > peak:
            peak = total
        elif total < trough:
            trough = total
        if peak - total > drawdown:
            drawdown = peak - total
    return total, peak, trough, drawdown


def _append(rows: dict[str, BookFigure], closes: dict[str, list[Fact]]) -> list[BookFigure]:
    """Append the closes (per rid, in closing order) to the rows' drawdown summaries, as
    oms.metrics.Drawdown.then does; returns the rows that must be recomputed because a close sorts
    before the row's last one."""
    stale = []
    for rid, facts in closes.items():
        row = rows[rid]
        if row.last_id is not None and facts[0].order <= (row.last_closed_at, row.last_id):
            stale.append(row)
            continue
        total, peak, trough, drawdown = _fold([units(f.pnl) for f in facts])
        before = row.pnl - total  # the counts already hold the batch
        row.drawdown = max(row.drawdown, drawdown, row.peak - (before + trough))
        row.peak, row.trough = max(row.peak, before + peak), min(row.trough, before + trough)
        row.last_closed_at, row.last_id = facts[-1].order
    return stale


def _record(facts: list[Fact], *, new: bool, closing: bool) -> None:
    """`new`: positions just added to the book (counted in `positions`); `closing`: positions that
    were open and are now closed. The batch is summed per finest group (the four dimensions) and per
    day row first, then added to each row: a sweep's 10 000 closes cost a few hundred row updates."""
    keys: dict[str, tuple[str, dict, date]] = {}
    groups: dict[str, tuple[list[str], _Delta]] = {}  # finest rid -> (the ALL_TIME rids it counts in, sums)
    day_deltas: dict[str, _Delta] = {}
    closes: dict[str, list[Fact]] = {}
    for fact in sorted(facts, key=lambda f: (f.closed is False, f.order if f.closed else (f.created_at, f.id))):
        finest = _rid(KINDS[-1], tuple(getattr(fact, name) for name in DIMS), ALL_TIME)
        group = groups.get(finest)
        if group is None:
            row_keys = _row_keys(fact)
            for rid, kind, dims, day in row_keys:
                keys[rid] = (kind, dims, day)
            group = groups[finest] = ([key[0] for key in row_keys], _Delta())
        rids, delta = group
        if new:
            delta.positions += 1
            _add_created(delta, fact.created_at)
            delta.open_positions += fact.status == PositionStatus.OPEN
        if closing:
            delta.open_positions -= 1
        delta.voided_count += fact.voided  # voided when inserted, or now (a void goes through the close path)
        if not fact.closed:
            continue
        _add_close(delta, fact)
        for rid in rids:
            closes.setdefault(rid, []).append(fact)
        for rid, kind, dims, day in _day_keys(fact):
            keys[rid] = (kind, dims, day)
            if rid not in day_deltas:
                day_deltas[rid] = _Delta()
            _add_close(day_deltas[rid], fact)
            _add_created(day_deltas[rid], fact.created_at)  # a day row counts its trades' opening times
            closes.setdefault(rid, []).append(fact)
    if not keys:
        return
    rows = _locked_rows(keys)
    for rids, delta in groups.values():
        for rid in rids:
            delta.add_to(rows[rid])
    for rid, delta in day_deltas.items():
        delta.add_to(rows[rid])
    stale = _append(rows, closes)
    for row in stale:
        if row.day != ALL_TIME:
            _recompute_from_positions(row)
    day_rows = [row for row in rows.values() if row.day != ALL_TIME]
    if day_rows:  # saved first: a stale ALL_TIME row of a day kind recomputes from its day rows
        _save(day_rows)
    for row in stale:
        if row.day == ALL_TIME:
            (_recompute_from_days if row.kind in DAY_KINDS else _recompute_from_positions)(row)
    _save([row for row in rows.values() if row.day == ALL_TIME])


def _facts(ids: list[int]) -> list[Fact]:
    """Read back from the database (in the caller's transaction) exactly what was stored."""
    facts = []
    for start in range(0, len(ids), CHUNK):
        facts += [
            Fact(*values)
            for values in Position.objects.filter(pk__in=ids[start : start + CHUNK]).values_list(*FACT_FIELDS)
        ]
    return facts


def book_figures_record_one_open(position: Position) -> None:
    """`book_figures_record_open` for the intake's one new open position: when its rows all exist,
    one UPDATE of them (positions + 1, open + 1, first/last opening time) under their locks, taken
    in rid order as `_locked_rows` does; otherwise (a new symbol, say) the general path, which
    creates them. Call in the transaction that inserted it."""
    if position.status != PositionStatus.OPEN:
        book_figures_record_open(position)
        return
    fact = Fact(
        position.pk,
        position.status,
        position.created_at,
        None,
        None,
        position.fee,
        "",
        *(getattr(position, name) for name in DIMS),
    )
    rids = sorted(rid for rid, *_ in _row_keys(fact))
    sql = _one_open_statements(connection.vendor, len(rids))
    created = BookFigure._meta.get_field("first_created_at").get_db_prep_save(position.created_at, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql.lock, rids)
        if len(cursor.fetchall()) != len(rids):
            book_figures_record_open(position)
            return
        cursor.execute(sql.update, [created, created, created, created, *rids])


@dataclass(frozen=True)
class _OneOpenSql:
    lock: str
    update: str


@cache
def _one_open_statements(vendor: str, count: int) -> _OneOpenSql:
    """SQL for `book_figures_record_one_open`, built once (lomsite/rowsql.py says why): lock the rows in
    rid order, then count the open in them (the same figures as `_Delta.add_to` for one open)."""
    quote = connection.ops.quote_name
    table = quote(BookFigure._meta.db_table)
    rid, first, last = (
        quote(BookFigure._meta.get_field(name).column) for name in ("rid", "first_created_at", "last_created_at")
    )
    positions, open_positions = (
        quote(BookFigure._meta.get_field(name).column) for name in ("positions", "open_positions")
    )
    wanted = f"{rid} IN ({', '.join(['%s'] * count)})"
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    return _OneOpenSql(
        lock=f"SELECT {quote(BookFigure._meta.pk.column)} FROM {table} WHERE {wanted} ORDER BY {rid}{lock}",
        update=(
            f"UPDATE {table} SET {positions} = {positions} + 1, {open_positions} = {open_positions} + 1, "
            f"{first} = CASE WHEN {first} IS NULL OR {first} > %s THEN %s ELSE {first} END, "
            f"{last} = CASE WHEN {last} IS NULL OR {last} < %s THEN %s ELSE {last} END "
            f"WHERE {wanted}"
        ),
    )


@transaction.atomic(savepoint=False)
def book_figures_record_open(positions: Position | Iterable[Position]) -> None:
    """Count newly inserted positions (open, or already closed when inserted closed) in the figures.
    Call in the transaction that inserts them."""
    items = [positions] if isinstance(positions, Position) else list(positions)
    _record(_facts([p.pk for p in items]), new=True, closing=False)


@transaction.atomic(savepoint=False)
def book_figures_record_closes(positions: Iterable[Position]) -> None:
    """Move positions that this transaction closed (each exactly once: open → closed) into the
    closed-trade figures. Bulk-friendly: a sweep's 10 000 closes touch a few hundred rows."""
    _record(_facts([p.pk for p in positions]), new=False, closing=True)


def book_figures_rebuild(*, position_model=Position, figure_model=BookFigure, using: str = "default") -> int:
    """Recompute every row from the positions (from scratch; returns the number of rows).

    One transaction that first locks the figures (PostgreSQL: LOCK TABLE; SQLite: the write lock),
    so an open or close running meanwhile waits and then records itself on the rebuilt rows. The
    models are parameters so that migration 0012 can pass its historical ones."""
    with transaction.atomic(using=using):
        connection = connections[using]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {connection.ops.quote_name(figure_model._meta.db_table)} IN EXCLUSIVE MODE")
        figure_model.objects.using(using).all().delete()
        rows = _rebuilt_rows(position_model.objects.using(using))
        objects = []
        # A migration's historical model may predate later counters (0014: manual_price_count, voided_count).
        known = {field.name for field in figure_model._meta.get_fields()}
        names = [f for f in ["rid", "kind", "day", *DIMS, *UPDATE_FIELDS] if f in known]
        for row in rows.values():
            objects.append(figure_model(**{f: getattr(row, f) for f in names}))
        figure_model.objects.using(using).bulk_create(objects, batch_size=1000)
    return len(rows)


def _rebuilt_rows(positions) -> dict[str, BookFigure]:
    """Every row from scratch, in one pass over the positions in closing order: counts and sums on
    the finest rows and the day rows (then rolled up into the coarser kinds), and each row's
    drawdown folded in integer units (the same arithmetic as oms.metrics.Drawdown.add)."""
    finest, finest_dims = KINDS[-1], DIMS
    rows: dict[str, BookFigure] = {}
    drawdowns: dict[str, list[int]] = {}  # rid -> [total, peak, trough, drawdown]
    kind_dims = [(kind, _dims_of(kind)) for kind in KINDS]
    day_kind_dims = [(kind, _dims_of(kind)) for kind in DAY_KINDS]

    def row_for(rid: str, kind: str, dims: dict, day: date) -> BookFigure:
        row = rows.get(rid)
        if row is None:
            row = rows[rid] = BookFigure(
                rid=rid, kind=kind, day=day, **dims, **{f: 0 for f in COUNTS}, peak=0, trough=0, drawdown=0
            )
        return row

    def fold(rid: str, pnl: int) -> None:
        state = drawdowns.get(rid)
        if state is None:
            state = drawdowns[rid] = [0, 0, 0, 0]
        total = state[0] + pnl
        state[0] = total
        if total > state[1]:
            state[1] = total
        if total < state[2]:
            state[2] = total
        if state[1] - total > state[3]:
            state[3] = state[1] - total

    not_closed = positions.exclude(status=PositionStatus.CLOSED).order_by("id")
    closed = positions.filter(status=PositionStatus.CLOSED).order_by("closed_at", "id")  # also a migration's model
    for query in (not_closed, closed):
        for values in query.values_list(*FACT_FIELDS).iterator(chunk_size=5000):
            fact = Fact(*values)
            dims = {name: getattr(fact, name) for name in finest_dims}
            row = row_for(_rid(finest, tuple(dims.values()), ALL_TIME), finest, dims, ALL_TIME)
            row.positions += 1
            _add_created(row, fact.created_at)
            row.open_positions += fact.status == PositionStatus.OPEN
            row.voided_count += fact.voided
            if not fact.closed:
                continue
            _add_close(row, fact)
            row.last_closed_at, row.last_id = fact.order
            day, pnl = _day(fact.closed_at), units(fact.pnl)
            for kind, names in day_kind_dims:
                values_ = tuple(dims[name] for name in names)
                day_row = row_for(_rid(kind, values_, day), kind, {n: dims[n] for n in names}, day)
                _add_close(day_row, fact)
                _add_created(day_row, fact.created_at)  # a day row counts its trades' opening times
                day_row.last_closed_at, day_row.last_id = fact.order
                fold(day_row.rid, pnl)
            for kind, names in kind_dims:
                fold(_rid(kind, tuple(dims[name] for name in names), ALL_TIME), pnl)
    for base in [row for row in rows.values() if row.kind == finest and row.day == ALL_TIME]:
        for kind, names in kind_dims[:-1]:  # roll the finest rows up into the coarser kinds
            dims = {name: getattr(base, name) for name in names}
            row = row_for(_rid(kind, tuple(dims.values()), ALL_TIME), kind, dims, ALL_TIME)
            for field in COUNTS:
                setattr(row, field, getattr(row, field) + getattr(base, field))
            _add_created(row, base.first_created_at)
            _add_created(row, base.last_created_at)
            last = (base.last_closed_at, base.last_id)
            if base.last_id is not None and (row.last_id is None or last > (row.last_closed_at, row.last_id)):
                row.last_closed_at, row.last_id = last
    for rid, (_, peak, trough, drawdown) in drawdowns.items():
        row = rows[rid]
        row.peak, row.trough, row.drawdown = peak, trough, drawdown
    return rows


# --- reading --------------------------------------------------------------------------------------


def _filter_dims(filters: dict) -> dict[str, str]:
    dims = {name: filters.get(name) for name in DIMS if filters.get(name)}
    if "symbol" in dims:
        dims["symbol"] = dims["symbol"].upper()  # as positions_filtered
    return dims


def figures_can_serve(filters: dict, group_by: str | None = None) -> bool:
    """Whether the maintained figures hold the answer: no opening-time range, no status or side
    filter, and group_by=day only over the whole book or one epoch."""
    if any(filters.get(name) for name in filters if name not in DIMS):
        return False
    if group_by == "day":
        return set(_filter_dims(filters)) <= {"account_label"}
    return True


READ_FIELDS = [
    "positions",
    "open_positions",
    "trades",
    "wins",
    "losses",
    *REASON_COUNTS,
    "voided_count",
    "pnl",
    "fees",
    "gross_win",
    "gross_loss",
    "drawdown",
    "first_created_at",
    "last_created_at",
    "last_closed_at",
]


TIMES = ("first_created_at", "last_created_at", "last_closed_at")


class _UtcWallTime(Func):
    template = "(%(expressions)s AT TIME ZONE 'UTC')"
    output_field = DateTimeField()


def _read(rows: QuerySet, *names: str) -> list[dict]:
    """`rows.values(*names, *READ_FIELDS)` for the groups' many rows. On PostgreSQL the times are
    read as UTC wall time, which psycopg loads in C, and made aware here: Django's loader of
    time-zone-aware values is Python, about 4 µs a value (300 values for group_by=symbol; for one
    row, compiling the three expressions costs more than it saves)."""
    if connections[rows.db].vendor != "postgresql":
        return list(rows.values(*names, *READ_FIELDS))
    walls = {f"{name}_utc": _UtcWallTime(name) for name in TIMES}
    found = list(rows.values(*names, *(field for field in READ_FIELDS if field not in TIMES), **walls))
    for row in found:
        for name in TIMES:
            wall = row.pop(f"{name}_utc")
            row[name] = wall if wall is None else wall.replace(tzinfo=UTC)
    return found


def _figures(row: dict, *, day_row: bool = False) -> dict:
    """The /stats figures of one row (a dict of READ_FIELDS), through oms.metrics."""
    sums = Sums(
        total_positions=row["trades"] if day_row else row["positions"],
        open_positions=0 if day_row else row["open_positions"],
        closed_positions=row["trades"],
        winning_trades=row["wins"],
        losing_trades=row["losses"],
        **{field: row[field] for field in REASON_COUNTS},
        voided_count=0 if day_row else row["voided_count"],
        total_pnl=money(row["pnl"]),
        total_fees=money(row["fees"]),
        gross_win=money(row["gross_win"]),
        gross_loss=money(row["gross_loss"]),
        first_trade_at=row["first_created_at"],
        last_trade_at=row["last_created_at"],
        last_close_at=row["last_closed_at"],
    )
    return stats_figures(sums, money(row["drawdown"]))


def figures_stats(filters: dict, group_by: str | None = None) -> dict | list[dict]:
    """The /stats figures (or groups) for `filters`, read from a few BookFigure rows."""
    dims = _filter_dims(filters)
    rows = BookFigure.objects.filter(**dims)
    if group_by == "day":
        kind = ",".join(name for name in DIMS if name in dims)
        rows = rows.filter(kind=kind, trades__gt=0).exclude(day=ALL_TIME).order_by("day")
        return [{"day": row["day"].isoformat(), **_figures(row, day_row=True)} for row in _read(rows, "day")]
    if group_by:
        kind = ",".join(name for name in DIMS if name in dims or name == group_by)
        rows = rows.filter(kind=kind, day=ALL_TIME, positions__gt=0).order_by(group_by)
        return [{group_by: row[group_by], **_figures(row)} for row in _read(rows, group_by)]
    kind = ",".join(name for name in DIMS if name in dims)
    row = rows.filter(kind=kind, day=ALL_TIME).values(*READ_FIELDS).first()
    return _figures(row) if row is not None else stats_figures(Sums(), ZERO)


def figures_epoch_pnl(epoch: str) -> Decimal:
    """The net PnL of an epoch's closed trades: one read of its ALL_TIME row by key (0 before its first trade)."""
    pnl = BookFigure.objects.filter(rid=_rid("account_label", (epoch,), ALL_TIME)).values_list("pnl", flat=True).first()
    return money(pnl or 0)


@dataclass(frozen=True)
class BookAndEpoch:
    stats: dict  # the whole book's /stats figures, as figures_stats({})
    epoch_pnl: Decimal  # as figures_epoch_pnl(epoch)
    capital: Decimal | None  # the epoch's recorded starting capital (None: none recorded)
    last_closed_at: datetime | None  # the book's last close


def figures_book_and_epoch(epoch: str) -> BookAndEpoch | None:
    """The whole book's figures, `epoch`'s PnL and its recorded capital in one query (the two
    ALL_TIME rows by key, the capital as a subquery); None while the book has no row."""
    book_rid, epoch_rid = _rid("", (), ALL_TIME), _rid("account_label", (epoch,), ALL_TIME)
    capital = Subquery(Epoch.objects.filter(name=epoch).values("starting_capital")[:1])
    rows = BookFigure.objects.filter(rid__in=[book_rid, epoch_rid]).annotate(capital=capital)
    found = {row["rid"]: row for row in rows.values("rid", "capital", *READ_FIELDS)}
    book, epoch_row = found.get(book_rid), found.get(epoch_rid)
    if book is None:
        return None
    epoch_pnl = money(epoch_row["pnl"] if epoch_row else 0)
    return BookAndEpoch(_figures(book), epoch_pnl, book["capital"], book["last_closed_at"])


def figures_equity_days(
    *, max_points: int = 240, last_closed_at: datetime | None = None
) -> list[tuple[datetime, Decimal]]:
    """The whole book's equity at the end of each closing day (at most about `max_points` points),
    each point dated at the start of its UTC day except the last, at the book's last close (dates
    are cheaper to read than 366 timestamps; the chart only labels the first and the last).
    `last_closed_at`: the book's last close when the caller has read it (else read here)."""
    rows = BookFigure.objects.filter(kind="", trades__gt=0)
    days = list(rows.exclude(day=ALL_TIME).order_by("day").values_list("day", "pnl"))
    if not days:
        return []
    totals = list(accumulate(pnl for _, pnl in days))  # in units; Decimals only for the points kept
    first = next((i for i, (_, pnl) in enumerate(days) if pnl), len(days))

    def point(i: int) -> tuple[datetime, Decimal]:
        # the sum of money(pnl) from ZERO, to the exponent: ZERO itself until the first non-zero PnL
        equity = Decimal(totals[i]).scaleb(-10) if i >= first else ZERO
        return datetime.combine(days[i][0], time.min, tzinfo=UTC), equity

    points = [point(i) for i in downsample(range(len(days)), max_points)]
    last_at = last_closed_at or rows.filter(day=ALL_TIME).values_list("last_closed_at", flat=True).first()
    points[-1] = (last_at or points[-1][0], points[-1][1])
    return points


def figures_drawdown_since(since: datetime | None) -> Drawdown:
    """The `Drawdown` of the whole book's trades closed after `since` (all of them for None): the
    closes of `since`'s own day from the positions (one day at most), then the maintained day rows."""
    rows = BookFigure.objects.filter(kind="", trades__gt=0)
    if since is None:
        row = rows.filter(day=ALL_TIME).first()
        return _summary(row) if row is not None else Drawdown()
    next_day = datetime.combine(_day(since) + timedelta(days=1), time.min, tzinfo=UTC)
    first = Drawdown.of(
        Position.objects.closed()
        .filter(closed_at__gt=since, closed_at__lt=next_day)
        .order_by("closed_at", "id")
        .values_list("pnl", flat=True)
    )
    return first.then(Drawdown.chain(_summary(row) for row in rows.filter(day__gt=_day(since)).order_by("day")))
