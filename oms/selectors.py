"""Read side: statistics computed in the database, and the filtered position list."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

from django.core.cache import cache
from django.db import connection
from django.db.models import Avg, Count, DecimalField, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils.dateparse import parse_datetime

from oms.models import STOP_LOSS_REASONS, TAKE_PROFIT_REASONS, BookVersion, CloseReason, Position, PositionStatus

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
    for name, value in (("status", status), ("symbol", symbol and symbol.upper()), ("strategy", strategy),
                        ("exchange", exchange), ("side", side), ("account_label", account_label)):
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
        "total_pnl": Coalesce(Sum("pnl", filter=closed), ZERO, output_field=money),
        "total_fees": Coalesce(Sum("fee", filter=closed), ZERO, output_field=money),
        "gross_win": Coalesce(Sum("pnl", filter=win), ZERO, output_field=money),
        "gross_loss": Coalesce(Sum("pnl", filter=loss), ZERO, output_field=money),
        "avg_pnl_per_trade": Avg("pnl", filter=closed),
        "avg_pnl_win": Avg("pnl", filter=win),
        "avg_pnl_loss": Avg("pnl", filter=loss),
        "first_trade_at": Min("created_at"),
        "last_trade_at": Max("created_at"),
                "last_close_at": Max("closed_at", filter=closed),
    }


def _to_decimal(value: object) -> Decimal | None:
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _finish(row: dict, max_drawdown: Decimal) -> dict:
    """Derived metrics from the aggregated row (no further queries)."""
    closed = row["closed_positions"]
    total_pnl = _to_decimal(row["total_pnl"]) or ZERO
    gross_win, gross_loss = _to_decimal(row.pop("gross_win")) or ZERO, _to_decimal(row.pop("gross_loss")) or ZERO
    last_close = row.pop("last_close_at")
    span_days = None
    if closed and row["first_trade_at"] and last_close:
        span_days = max((last_close - row["first_trade_at"]).total_seconds() / 86400, 1.0)
    for key in ("avg_pnl_per_trade", "avg_pnl_win", "avg_pnl_loss", "total_fees"):
        row[key] = _to_decimal(row[key])
    row.update(
        total_pnl=total_pnl,
        gross_pnl=total_pnl + (row["total_fees"] or ZERO),
        winrate=round(100.0 * row["winning_trades"] / closed, 4) if closed else 0.0,
        profit_factor=(gross_win / -gross_loss) if gross_loss else None,
        expectancy=(total_pnl / closed) if closed else None,
        max_drawdown=max_drawdown,
        trades_per_day=round(closed / span_days, 4) if span_days else 0.0,
    )
    return row


def _drawdowns(queryset: QuerySet[Position], group_by: str | None) -> dict[str, Decimal]:
    """Max drawdown of the cumulative net PnL over closed trades (ordered by close time), per group.

    Window functions in the database: equity = running sum of pnl, peak = running max of equity
    (never below the starting 0), drawdown = peak − equity.
    """
    inner_sql, params = queryset.filter(status=PositionStatus.CLOSED).values("id").query.sql_with_params()
    table = connection.ops.quote_name(Position._meta.db_table)
    if group_by == "day":
        group_column = "DATE(closed_at)" if connection.vendor == "sqlite" else "(closed_at AT TIME ZONE 'UTC')::date"
    else:
        group_column = connection.ops.quote_name(GROUP_FIELDS[group_by]) if group_by else "0"
    sql = f"""
        SELECT grp, MAX((CASE WHEN peak > 0 THEN peak ELSE 0 END) - equity) FROM (
            SELECT grp, equity,
                   MAX(equity) OVER (PARTITION BY grp ORDER BY closed_at, id ROWS UNBOUNDED PRECEDING) AS peak
            FROM (
                SELECT {group_column} AS grp, closed_at, id,
                       SUM(pnl) OVER (PARTITION BY {group_column} ORDER BY closed_at, id
                                      ROWS UNBOUNDED PRECEDING) AS equity
                FROM {table} WHERE id IN ({inner_sql})
            ) curve
        ) peaks GROUP BY grp
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {str(grp): max(_to_decimal(dd) or ZERO, ZERO) for grp, dd in cursor.fetchall()}


def position_stats(queryset: QuerySet[Position]) -> dict:
    """The /stats metrics over `queryset`: two queries whatever the number of rows."""
    row = queryset.order_by().aggregate(**_metric_aggregates())
    return _finish(row, _drawdowns(queryset, None).get("0", ZERO))


def position_stats_grouped(queryset: QuerySet[Position], group_by: str) -> list[dict]:
    """The same metrics per symbol, strategy, exchange or closing day."""
    if group_by not in GROUP_FIELDS:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_FIELDS)}")
    if group_by == "day":
        # A day groups the trades closed that day; open positions have no closing day.
        queryset = queryset.filter(status=PositionStatus.CLOSED).annotate(day=TruncDate("closed_at"))
    rows = queryset.order_by().values(group_by).annotate(**_metric_aggregates()).order_by(group_by)
    drawdowns = _drawdowns(queryset, group_by)
    results = []
    for row in rows:
        key = row.pop(group_by)
        stats = _finish(row, drawdowns.get(str(key), ZERO))
        results.append({group_by: str(key) if group_by == "day" else key, **stats})
    return results


def equity_curve(queryset: QuerySet[Position], *, max_points: int = 240) -> list[tuple[datetime, Decimal]]:
    """Cumulative net PnL after each closed trade (ordered by close time), at most `max_points` points.

    Downsampled in the database: the running sum is computed over every trade, but only every
    n-th point (and always the first and the last) leaves it, so the page stays fast at any size.
    """
    closed = queryset.filter(status=PositionStatus.CLOSED)
    total = closed.order_by().count()
    if not total:
        return []
    step = max(1, -(-total // max(max_points - 1, 1)))  # ceiling division
    inner_sql, params = closed.values("id").query.sql_with_params()
    table = connection.ops.quote_name(Position._meta.db_table)
    sql = f"""
        SELECT closed_at, equity FROM (
            SELECT closed_at,
                   SUM(pnl) OVER (ORDER BY closed_at, id ROWS UNBOUNDED PRECEDING) AS equity,
                   ROW_NUMBER() OVER (ORDER BY closed_at, id) AS rn
            FROM {table} WHERE id IN ({inner_sql})
        ) curve
        WHERE rn = 1 OR rn = %s OR rn %% %s = 0
        ORDER BY rn
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, (*params, total, step))
        rows = cursor.fetchall()
    points = []
    for closed_at, equity in rows:
        if isinstance(closed_at, str):  # SQLite hands raw timestamps back as text
            closed_at = parse_datetime(closed_at)
            if closed_at is not None and closed_at.tzinfo is None:
                closed_at = closed_at.replace(tzinfo=UTC)
        points.append((closed_at, _to_decimal(equity) or ZERO))
    return points


def book_version() -> str:
    """The current book version token (one primary-key read; see oms.services.book)."""
    return BookVersion.objects.filter(pk=1).values_list("token", flat=True).first() or "none"


def cached_over_book(name: str, compute: Callable[[], T], *extra: object, timeout: int = BOOK_CACHE_SEC) -> T:
    """`compute()` cached until the next open or close (or `timeout` seconds): at 200 000 trades
    the full statistics take about a second, and pages and bots ask for them every few seconds."""
    digest = hashlib.sha256(repr((book_version(), *extra)).encode()).hexdigest()[:32]
    return cache.get_or_set(f"loms:book:{name}:{digest}", compute, timeout)
