"""The one definition of every trading figure: winrate, PnL, profit factor, expectancy, equity curve
and drawdown, an epoch's equity and return.

Pure functions over Decimals (no rounding beyond Decimal's 28 significant digits, except the
winrate, a float percent with 4 decimals, and the return, a percent with 4 decimals), plus one SQL
helper (`drawdown_summaries`) that computes the same drawdown summary in the database with window
functions. `/stats` (`oms/selectors.py`), the overview, the maintained book figures (`oms/services/figures.py`),
`shadow_report` (`oms/services/shadow.py`), `print_stats` and the trips (`oms/services/trips.py`)
all take their figures from here, so they cannot disagree.

Drawdown: the equity is the running sum of net PnL over closed trades in (closed_at, id) order,
starting at 0; the drawdown is the largest fall from a running peak (the start, 0, counts as a
peak). A `Drawdown` summary of a sequence of trades composes associatively with the summary of the
trades that follow (`then`), which is what lets the figures be maintained per closing day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import QuerySet

ZERO = Decimal("0")


def winrate_pct(wins: int, trades: int) -> float:
    """Percent of the closed trades that won (pnl > 0); 0.0 without trades."""
    return round(100.0 * wins / trades, 4) if trades else 0.0


def profit_factor(gross_win: Decimal, gross_loss: Decimal) -> Decimal | None:
    """Sum of the winning PnL over the magnitude of the sum of the losing PnL; None without losses.
    `gross_loss` is the (negative or zero) sum of the losing trades' PnL."""
    return (gross_win / -gross_loss) if gross_loss else None


def average(total: Decimal, count: int) -> Decimal | None:
    return (total / count) if count else None


def expectancy(total_pnl: Decimal, trades: int) -> Decimal | None:
    """Average net PnL per closed trade."""
    return average(total_pnl, trades)


RETURN_PLACES = Decimal("0.0001")


def equity(starting_capital: Decimal, total_pnl: Decimal) -> Decimal:
    """An epoch's equity: its starting capital plus the net PnL of its closed trades."""
    return starting_capital + total_pnl


def return_pct(starting_capital: Decimal, equity_now: Decimal) -> Decimal | None:
    """The return in percent, (equity / starting capital − 1) × 100, with 4 decimals; None without capital."""
    if starting_capital <= 0:
        return None
    return ((equity_now / starting_capital - 1) * 100).quantize(RETURN_PLACES)


def equity_figures(epoch: str, starting_capital: Decimal, total_pnl: Decimal) -> dict:
    """The equity figures of an epoch (added to GET /stats, the console, print_stats, shadow_report)."""
    equity_now = equity(starting_capital, total_pnl)
    return {
        "epoch": epoch,
        "starting_capital": starting_capital,
        "equity": equity_now,
        "return_pct": return_pct(starting_capital, equity_now),
    }


def trades_per_day(trades: int, first_at: datetime | None, last_at: datetime | None) -> float:
    """Closed trades per day over [first_at, last_at], at least one day; 0.0 without trades."""
    if not trades or first_at is None or last_at is None:
        return 0.0
    return round(trades / max((last_at - first_at).total_seconds() / 86400, 1.0), 4)


@dataclass(frozen=True)
class Drawdown:
    """Summary of a sequence of trades in closing order, relative to the equity before the first.

    peak/trough: highest/lowest equity reached (the start, 0, included); drawdown: largest fall
    from a running peak inside the sequence.
    """

    trades: int = 0
    total: Decimal = ZERO
    peak: Decimal = ZERO
    trough: Decimal = ZERO
    drawdown: Decimal = ZERO

    def add(self, pnl: Decimal) -> Drawdown:
        total = self.total + pnl
        peak = max(self.peak, total)
        return Drawdown(self.trades + 1, total, peak, min(self.trough, total), max(self.drawdown, peak - total))

    def then(self, other: Drawdown) -> Drawdown:
        """The summary of this sequence followed by `other` (associative; `Drawdown()` is neutral)."""
        if not other.trades:
            return self
        if not self.trades:
            return other
        return Drawdown(
            trades=self.trades + other.trades,
            total=self.total + other.total,
            peak=max(self.peak, self.total + other.peak),
            trough=min(self.trough, self.total + other.trough),
            drawdown=max(self.drawdown, other.drawdown, self.peak - (self.total + other.trough)),
        )

    @property
    def current(self) -> Decimal:
        """How far the equity now is below its peak."""
        return self.peak - self.total

    @classmethod
    def of(cls, pnls: Iterable[Decimal]) -> Drawdown:
        summary = cls()
        for pnl in pnls:
            summary = summary.add(pnl)
        return summary

    @classmethod
    def chain(cls, summaries: Iterable[Drawdown]) -> Drawdown:
        result = cls()
        for summary in summaries:
            result = result.then(summary)
        return result


def max_drawdown(pnls: Iterable[Decimal]) -> Decimal:
    return Drawdown.of(pnls).drawdown


def max_drawdown_with_peak(pnls: Iterable[Decimal]) -> tuple[Decimal, Decimal]:
    """(max drawdown, the peak it fell from: the first peak reaching the largest fall)."""
    equity = peak = worst = worst_peak = ZERO
    for pnl in pnls:
        equity += pnl
        peak = max(peak, equity)
        if peak - equity > worst:
            worst, worst_peak = peak - equity, peak
    return worst, worst_peak


def equity_curve(trades: Iterable[tuple[datetime, Decimal]]) -> list[tuple[datetime, Decimal]]:
    """Cumulative net PnL after each (closed_at, pnl), in the order given (closing order)."""
    equity, points = ZERO, []
    for closed_at, pnl in trades:
        equity += pnl
        points.append((closed_at, equity))
    return points


def downsample(points: list, max_points: int) -> list:
    """Every n-th point (and always the first and the last), at most about `max_points` points."""
    if len(points) <= max_points:
        return points
    step = -(-len(points) // max(max_points - 1, 1))
    return [p for i, p in enumerate(points, start=1) if i == 1 or i == len(points) or i % step == 0]


@dataclass(frozen=True)
class Sums:
    """The additive figures of a set of positions (what a query or the maintained figures sum)."""

    total_positions: int = 0
    open_positions: int = 0
    closed_positions: int = 0
    winning_trades: int = 0
    losing_trades: int = 0
    tp_count: int = 0
    sl_count: int = 0
    trailing_sl_count: int = 0
    manual_count: int = 0
    timeout_count: int = 0
    panic_count: int = 0
    manual_price_count: int = 0  # closed at an operator's price (a stuck position, issue #12 §7)
    voided_count: int = 0  # voided positions: counted here only, never a trade
    total_pnl: Decimal = ZERO
    total_fees: Decimal = ZERO
    gross_win: Decimal = ZERO  # sum of the winning trades' pnl (>= 0)
    gross_loss: Decimal = ZERO  # sum of the losing trades' pnl (<= 0)
    first_trade_at: datetime | None = None  # min created_at
    last_trade_at: datetime | None = None  # max created_at
    last_close_at: datetime | None = None  # max closed_at


def stats_figures(sums: Sums, drawdown: Decimal) -> dict:
    """The /stats figures (the response shape of GET /stats) from the sums and the max drawdown."""
    closed = sums.closed_positions
    return {
        "total_positions": sums.total_positions,
        "open_positions": sums.open_positions,
        "closed_positions": closed,
        "winning_trades": sums.winning_trades,
        "losing_trades": sums.losing_trades,
        "tp_count": sums.tp_count,
        "sl_count": sums.sl_count,
        "trailing_sl_count": sums.trailing_sl_count,
        "manual_count": sums.manual_count,
        "timeout_count": sums.timeout_count,
        "panic_count": sums.panic_count,
        "manual_price_count": sums.manual_price_count,
        "voided_count": sums.voided_count,
        "total_pnl": sums.total_pnl,
        "total_fees": sums.total_fees,
        "avg_pnl_per_trade": average(sums.total_pnl, closed),
        "avg_pnl_win": average(sums.gross_win, sums.winning_trades),
        "avg_pnl_loss": average(sums.gross_loss, sums.losing_trades),
        "first_trade_at": sums.first_trade_at,
        "last_trade_at": sums.last_trade_at,
        "gross_pnl": sums.total_pnl + sums.total_fees,
        "winrate": winrate_pct(sums.winning_trades, closed),
        "profit_factor": profit_factor(sums.gross_win, sums.gross_loss),
        "expectancy": expectancy(sums.total_pnl, closed),
        "max_drawdown": max(drawdown, ZERO),
        "trades_per_day": trades_per_day(closed, sums.first_trade_at, sums.last_close_at),
    }


MONEY_PLACES = Decimal("1e-10")  # the positions' precision (DecimalField decimal_places=10)


def db_decimal(value: object) -> Decimal:
    """A sum from the database as a Decimal: SQLite sums decimals as floats, so its results are
    rounded back to the positions' 10 decimal places (exact while the float error stays below that)."""
    if value is None:
        return ZERO
    return (value if isinstance(value, Decimal) else Decimal(str(value))).quantize(MONEY_PLACES)


def drawdown_summaries(queryset: QuerySet, group_sql: str = "0") -> dict[str, Drawdown]:
    """`Drawdown` of the closed positions of `queryset`, per value of the SQL expression
    `group_sql`, computed in the database: running sum of pnl over (closed_at, id) in a window,
    its running peak, then one row per group. The number of queries does not grow with the rows.
    """
    from oms.models import Position

    inner_sql, params = queryset.closed().values("id").query.sql_with_params()
    table = connection.ops.quote_name(Position._meta.db_table)
    sql = f"""
        SELECT grp, COUNT(*), SUM(pnl), MAX(equity), MIN(equity), MAX(peak - equity) FROM (
            SELECT grp, pnl, equity,
                   MAX(equity) OVER (PARTITION BY grp ORDER BY closed_at, id ROWS UNBOUNDED PRECEDING) AS peak
            FROM (
                SELECT {group_sql} AS grp, closed_at, id, pnl,
                       SUM(pnl) OVER (PARTITION BY {group_sql} ORDER BY closed_at, id
                                      ROWS UNBOUNDED PRECEDING) AS equity
                FROM {table} WHERE id IN ({inner_sql})
            ) curve
        ) peaks GROUP BY grp
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    result = {}
    for grp, count, total, high, low, fall in rows:
        peak = max(db_decimal(high), ZERO)
        # the start (0) is a peak too: a fall from 0 to the lowest equity counts
        result[str(grp)] = Drawdown(
            trades=int(count),
            total=db_decimal(total),
            peak=peak,
            trough=min(db_decimal(low), ZERO),
            drawdown=max(db_decimal(fall), -min(db_decimal(low), ZERO), ZERO),
        )
    return result
