"""Read side: statistics computed in the database, and the filtered position list."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, DecimalField, F, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate

from lomsite.rowsql import row_by
from oms.metrics import (
    Sums,
    db_decimal,
    downsample,
    drawdown_summaries,
    equity_curve,
    equity_figures,
    stats_figures,
)
from oms.models import (
    STOP_LOSS_REASONS,
    TAKE_PROFIT_REASONS,
    BookVersion,
    CloseReason,
    Epoch,
    Notification,
    OmsControl,
    OmsSwitchChange,
    OperatorAction,
    Order,
    OrderPurpose,
    OrderStatus,
    Position,
    PositionFunding,
    PositionStatus,
    Signal,
)

GROUP_FIELDS = {"symbol": "symbol", "strategy": "strategy", "exchange": "exchange", "day": "day"}
ZERO = Decimal("0")
BOOK_CACHE_SEC = 300
T = TypeVar("T")


def positions_filtered(
    *,
    status: str | None = None,
    symbol: str | None = None,
    strategy: str | None = None,
    exchange: str | None = None,
    side: str | None = None,
    account_label: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Position]:
    """Positions matching every given filter (created_at in [since, until))."""
    conditions = Q()
    for name, value in (
        ("status", status),
        ("symbol", symbol and symbol.upper()),
        ("strategy", strategy),
        ("exchange", exchange),
        ("side", side),
        ("account_label", account_label),
    ):
        if value:
            conditions &= Q(**{name: value})
    if since:
        conditions &= Q(created_at__gte=since)
    if until:
        conditions &= Q(created_at__lt=until)
    return Position.objects.filter(conditions)


def _metric_aggregates() -> dict:
    closed = Q(status=PositionStatus.CLOSED)
    win = closed & Q(pnl__gt=0)
    loss = closed & Q(pnl__lt=0)
    money = DecimalField(max_digits=28, decimal_places=10)
    return {
        "total_positions": Count("id"),
        "open_positions": Count("id", filter=Q(status=PositionStatus.OPEN)),
        "closed_positions": Count("id", filter=closed),
        "winning_trades": Count("id", filter=win),
        "losing_trades": Count("id", filter=loss),
        "tp_count": Count("id", filter=closed & Q(auto_close_reason__in=TAKE_PROFIT_REASONS)),
        "sl_count": Count("id", filter=closed & Q(auto_close_reason__in=STOP_LOSS_REASONS)),
        "trailing_sl_count": Count("id", filter=closed & Q(auto_close_reason=CloseReason.TRAILING_SL)),
        "manual_count": Count("id", filter=closed & Q(auto_close_reason=CloseReason.MANUAL)),
        "timeout_count": Count("id", filter=closed & Q(auto_close_reason=CloseReason.TIMEOUT)),
        "panic_count": Count("id", filter=closed & Q(auto_close_reason=CloseReason.PANIC)),
        "manual_price_count": Count("id", filter=closed & Q(auto_close_reason=CloseReason.MANUAL_PRICE)),
        "voided_count": Count("id", filter=Q(status=PositionStatus.CANCELLED, auto_close_reason=CloseReason.VOID)),
        "total_pnl": Coalesce(Sum("pnl", filter=closed), ZERO, output_field=money),
        "total_fees": Coalesce(Sum("fee", filter=closed), ZERO, output_field=money),
        "gross_win": Coalesce(Sum("pnl", filter=win), ZERO, output_field=money),
        "gross_loss": Coalesce(Sum("pnl", filter=loss), ZERO, output_field=money),
        "first_trade_at": Min("created_at"),
        "last_trade_at": Max("created_at"),
        "last_close_at": Max("closed_at", filter=closed),
    }


def _sums(row: dict) -> Sums:
    money = {"total_pnl", "total_fees", "gross_win", "gross_loss"}
    return Sums(**{key: db_decimal(value) if key in money else value for key, value in row.items()})


def _group_sql(group_by: str | None) -> str:
    if group_by == "day":
        return "DATE(closed_at)" if connection.vendor == "sqlite" else "(closed_at AT TIME ZONE 'UTC')::date"
    return connection.ops.quote_name(GROUP_FIELDS[group_by]) if group_by else "0"


def _drawdowns(queryset: QuerySet[Position], group_by: str | None) -> dict[str, Decimal]:
    """Max drawdown per group (oms.metrics.drawdown_summaries: window functions in the database)."""
    return {grp: summary.drawdown for grp, summary in drawdown_summaries(queryset, _group_sql(group_by)).items()}


def position_stats(queryset: QuerySet[Position]) -> dict:
    """The /stats metrics over `queryset` from scratch in SQL: two queries whatever the number of rows.
    (`book_stats` serves the same figures from the maintained book figures when it can.)"""
    row = queryset.order_by().aggregate(**_metric_aggregates())
    return stats_figures(_sums(row), _drawdowns(queryset, None).get("0", ZERO))


def position_stats_grouped(queryset: QuerySet[Position], group_by: str) -> list[dict]:
    """The same metrics per symbol, strategy, exchange or closing day."""
    if group_by not in GROUP_FIELDS:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_FIELDS)}")
    if group_by == "day":
        # A day groups the trades closed that day; open positions have no closing day.
        queryset = queryset.closed().annotate(day=TruncDate("closed_at"))
    rows = queryset.order_by().values(group_by).annotate(**_metric_aggregates()).order_by(group_by)
    drawdowns = _drawdowns(queryset, group_by)
    results = []
    for row in rows:
        key = row.pop(group_by)
        stats = stats_figures(_sums(row), drawdowns.get(str(key), ZERO))
        results.append({group_by: str(key) if group_by == "day" else key, **stats})
    return results


def book_stats(filters: dict, group_by: str | None = None) -> dict | list[dict]:
    """/stats over the positions matching `filters` (the keyword arguments of `positions_filtered`):
    from the figures maintained as trades happen (a few rows) when they can serve the filters,
    else from scratch in SQL. Both give the same figures (oms/tests/test_book_figures.py)."""
    from oms.services.figures import figures_can_serve, figures_stats

    if figures_can_serve(filters, group_by):
        return figures_stats(filters, group_by)
    positions = positions_filtered(**filters)
    return position_stats_grouped(positions, group_by) if group_by else position_stats(positions)


def _capital_or_default(capital: Decimal | None) -> Decimal:
    return capital if capital is not None else settings.STARTING_CAPITAL_USDT


def epoch_starting_capital(epoch: str) -> Decimal:
    """The capital `epoch` started with (STARTING_CAPITAL_USDT for one that never recorded it)."""
    return _capital_or_default(Epoch.objects.filter(name=epoch).values_list("starting_capital", flat=True).first())


def epoch_equity(epoch: str | None = None) -> dict:
    """`epoch`'s (default: the current one) starting capital, equity and return %: two reads by key
    (its capital, its maintained PnL), never an aggregate over the book, so signal intake can size by it."""
    from oms.services.figures import figures_epoch_pnl

    epoch = epoch or OmsControl.load().epoch
    return equity_figures(epoch, epoch_starting_capital(epoch), figures_epoch_pnl(epoch))


def stats_with_equity(filters: dict) -> dict:
    """GET /stats without group_by: the figures over `filters`, plus the equity figures of the epoch
    the filters name (`account_label`), else of the current epoch, whatever the other filters."""
    return {**book_stats(filters), **epoch_equity(filters.get("account_label"))}


def book_equity_curve(
    closed_trades: int, *, max_points: int = 240, last_closed_at: datetime | None = None
) -> list[tuple[datetime, Decimal]]:
    """The whole book's equity curve for the overview: after each closed trade while the book has at
    most `max_points` of them (a small query), else at the last close of each closing day, from the
    maintained figures (a few hundred rows however many trades), downsampled to `max_points`.
    `last_closed_at`: the book's last close when the caller has read it."""
    if closed_trades <= max_points:  # in Python (oms.metrics), exact on SQLite too, where SQL sums floats
        trades = Position.objects.closed().order_by("closed_at", "id").values_list("closed_at", "pnl")[: max_points + 1]
        return downsample(equity_curve(trades), max_points)
    from oms.services.figures import figures_equity_days

    return figures_equity_days(max_points=max_points, last_closed_at=last_closed_at)


def book_overview(epoch: str | None = None) -> dict:
    """The overview's figures: `stats` as book_stats({}), `equity` as epoch_equity(epoch) (default:
    the current epoch) and `curve` as book_equity_curve, in two queries from the maintained figures
    (the book's and the epoch's rows with the epoch's capital, then the curve's days) where those
    take five."""
    from oms.services.figures import figures_book_and_epoch

    epoch = epoch or OmsControl.load().epoch
    found = figures_book_and_epoch(epoch)
    if found is None:  # nothing was ever opened
        stats = book_stats({})
        return {"stats": stats, "equity": epoch_equity(epoch), "curve": book_equity_curve(stats["closed_positions"])}
    return {
        "stats": found.stats,
        "equity": equity_figures(epoch, _capital_or_default(found.capital), found.epoch_pnl),
        "curve": book_equity_curve(found.stats["closed_positions"], last_closed_at=found.last_closed_at),
    }


def book_version() -> str:
    """The current book version token (one primary-key read, SQL built once: lomsite/rowsql.py;
    see oms.services.book)."""
    row = row_by(BookVersion, "id", 1)
    return (row and row.token) or "none"


def cached_over_book(name: str, compute: Callable[[], T], *extra: object, timeout: int = BOOK_CACHE_SEC) -> T:
    """`compute()` cached until the next open or close (or `timeout` seconds): at 200 000 trades
    the full statistics take about a second, and pages and bots ask for them every few seconds."""
    digest = hashlib.sha256(repr((book_version(), *extra)).encode()).hexdigest()[:32]
    return cache.get_or_set(f"loms:book:{name}:{digest}", compute, timeout)


# --- lists and single rows read by the API, the console and the commands -----------------------------


def position_list() -> QuerySet[Position]:
    """Every position, newest first, with the signals that opened it (the API's list)."""
    return Position.objects.prefetch_related("signals").order_by("-created_at", "-id")


def position_get(position_id: int) -> Position:
    """One position; raises Position.DoesNotExist."""
    return Position.objects.get(pk=position_id)


def position_funding_list(position_id: int) -> QuerySet[PositionFunding]:
    """The funding payments of one position, oldest funding time first."""
    return PositionFunding.objects.filter(position_id=position_id).order_by("funding_time", "id")


def open_book() -> dict:
    """How many positions are open and their notional at entry (the close-all confirmation)."""
    return Position.objects.open().aggregate(count=Count("id"), notional=Sum(F("entry_price") * F("qty")))


def order_list(*, symbol: str = "") -> QuerySet[Order]:
    queryset = Order.objects.order_by("-created_at", "-id")
    return queryset.filter(symbol=symbol) if symbol else queryset


def signal_list(*, outcome: str = "", symbol: str = "") -> QuerySet[Signal]:
    queryset = Signal.objects.select_related("position").order_by("-received_at", "-id")
    if outcome:
        queryset = queryset.filter(outcome=outcome)
    return queryset.filter(symbol=symbol) if symbol else queryset


def signal_by_dedupe_key(dedupe_key: str) -> Signal | None:
    """The signal that holds `dedupe_key` (unique), if any: asked for every signal the bot sends
    (SQL built once: lomsite/rowsql.py)."""
    return row_by(Signal, "dedupe_key", dedupe_key)


def signals_latest(count: int = 10) -> list[Signal]:
    """The newest signals, for the overview: their own columns only (it links a position by its id)."""
    return list(Signal.objects.order_by("-received_at", "-id")[:count])


def switch_history(limit: int = 50) -> QuerySet[OmsSwitchChange]:
    return OmsSwitchChange.objects.select_related("user").order_by("-changed_at", "-id")[:limit]


def switch_last_change() -> OmsSwitchChange | None:
    return OmsSwitchChange.objects.order_by("-changed_at", "-id").first()


# The operator actions that close a position: who closed it is the latest of these on it.
CLOSING_ACTIONS = ("close", "settle_price", "void")


def operator_action_list(
    *, position_id: int | None = None, actor: str = "", action: str = ""
) -> QuerySet[OperatorAction]:
    """The operator audit, newest first, filtered by position, actor (exact) and action."""
    queryset = OperatorAction.objects.select_related("position").order_by("-at", "-id")
    if position_id is not None:
        queryset = queryset.filter(position_id=position_id)
    if actor:
        queryset = queryset.filter(actor=actor)
    if action:
        queryset = queryset.filter(action=action)
    return queryset


def position_closed_by(position_id: int) -> OperatorAction | None:
    """The operator action that closed (or settled, or voided) this position; None when the sweep did."""
    return (
        OperatorAction.objects.filter(position_id=position_id, action__in=CLOSING_ACTIONS)
        .order_by("-at", "-id")
        .first()
    )


def notification_list(*, status: str = "") -> QuerySet[Notification]:
    queryset = Notification.objects.order_by("-created_at", "-id")
    return queryset.filter(status=status) if status else queryset


def position_qty_held_at(position: Position, when: datetime) -> Decimal:
    """The quantity `position` held at `when`: what is open now plus what its exits closed since."""
    exits_since = position.orders.filter(purpose=OrderPurpose.EXIT, created_at__gt=when).exclude(
        status__in=[OrderStatus.REJECTED, OrderStatus.CANCELLED]
    )
    return position.qty + sum((order.filled_qty or order.qty for order in exits_since), Decimal("0"))


def open_positions_matching(*, symbol: str, side: str, strategy: str, exchange: str) -> list[Position]:
    """The open positions an exit or stop signal names by its fields (oldest first). The exchange is the
    position's, or the one its opening signal named (in demo/live a position lives on BROKER_EXCHANGE)."""
    opened_on = Q(exchange=exchange) | Q(signals__exchange=exchange, signals__outcome="opened")
    matching = Position.objects.open().filter(opened_on, symbol=symbol, side=side, strategy=strategy)
    return list(matching.distinct().order_by("created_at", "id"))
