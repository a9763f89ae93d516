"""The shadow-mode go/no-go report: how the paper book did over a period, against thresholds.

The arithmetic is pure functions over `Trade` values (easy to check by hand); `shadow_report`
gathers the trades and the health facts from the database and applies them.

Winrate criterion: the *lower bound* of the Wilson 95 % interval must reach
SHADOW_MIN_WINRATE_PCT, not the point estimate, so a small lucky sample cannot pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from oms import metrics
from oms.console.charts import equity_chart
from oms.models import STOP_LOSS_REASONS, TAKE_PROFIT_REASONS, AutoCloseMonitor, Position
from oms.selectors import epoch_equity

Z_95 = 1.959963984540054
ZERO = Decimal("0")


@dataclass(frozen=True)
class Trade:
    id: int
    closed_at: datetime
    pnl: Decimal
    reason: str
    symbol: str
    strategy: str


@dataclass(frozen=True)
class Thresholds:
    min_trades: int
    min_winrate_pct: Decimal
    max_drawdown_usdt: Decimal
    max_open_age_hours: int

    @classmethod
    def from_settings(cls) -> Thresholds:
        return cls(
            min_trades=settings.SHADOW_MIN_TRADES,
            min_winrate_pct=settings.SHADOW_MIN_WINRATE_PCT,
            max_drawdown_usdt=settings.SHADOW_MAX_DRAWDOWN_USDT,
            max_open_age_hours=settings.SHADOW_MAX_OPEN_AGE_HOURS,
        )


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion, as fractions; (0, 0) for no trials."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - margin), min(1.0, centre + margin)


def equity_curve(trades: list[Trade]) -> list[tuple[datetime, Decimal]]:
    """Cumulative net PnL after each trade, in closing order (oms.metrics.equity_curve)."""
    return metrics.equity_curve((trade.closed_at, trade.pnl) for trade in trades)


def max_drawdown(pnls: list[Decimal]) -> tuple[Decimal, float | None]:
    """Largest fall of the equity from its running peak (oms.metrics: the peak starts at 0, the empty book).

    Returns (absolute, percent of the peak it fell from); the percent is None when that peak was 0.
    """
    worst, worst_peak = metrics.max_drawdown_with_peak(pnls)
    percent = float(worst / worst_peak * 100) if worst_peak > 0 else None
    return worst, percent


def longest_losing_streak(pnls: list[Decimal]) -> int:
    longest = current = 0
    for pnl in pnls:
        current = current + 1 if pnl < 0 else 0
        longest = max(longest, current)
    return longest


def trade_metrics(trades: list[Trade], *, period_days: float | None = None) -> dict:
    """Every figure of the report for one list of trades (sorted here by closing time)."""
    trades = sorted(trades, key=lambda t: (t.closed_at, t.id))
    pnls = [t.pnl for t in trades]
    n = len(trades)
    wins = sum(1 for p in pnls if p > 0)
    losses = sum(1 for p in pnls if p < 0)
    gross_win = sum((p for p in pnls if p > 0), ZERO)
    gross_loss = -sum((p for p in pnls if p < 0), ZERO)
    total = sum(pnls, ZERO)
    low, high = wilson_interval(wins, n)
    drawdown, drawdown_pct = max_drawdown(pnls)
    tp = sum(1 for t in trades if t.reason in TAKE_PROFIT_REASONS)
    sl = sum(1 for t in trades if t.reason in STOP_LOSS_REASONS)
    if period_days is None and n:
        period_days = max((trades[-1].closed_at - trades[0].closed_at).total_seconds() / 86400, 1.0)
    return {
        "closed_trades": n,
        "wins": wins,
        "losses": losses,
        "breakeven": n - wins - losses,
        "winrate_pct": metrics.winrate_pct(wins, n) if n else None,
        "winrate_ci95_low_pct": round(100 * low, 2) if n else None,
        "winrate_ci95_high_pct": round(100 * high, 2) if n else None,
        "tp_count": tp,
        "sl_count": sl,
        "other_exit_count": n - tp - sl,
        "tp_pct": round(100 * tp / n, 2) if n else None,
        "sl_pct": round(100 * sl / n, 2) if n else None,
        "other_exit_pct": round(100 * (n - tp - sl) / n, 2) if n else None,
        "total_pnl": total,
        "gross_win": gross_win,
        "gross_loss": gross_loss,
        "profit_factor": metrics.profit_factor(gross_win, -gross_loss),
        "expectancy": metrics.expectancy(total, n),
        "avg_win": metrics.average(gross_win, wins),
        "avg_loss": metrics.average(-gross_loss, losses),
        "max_drawdown": drawdown,
        "max_drawdown_pct_of_peak": round(drawdown_pct, 2) if drawdown_pct is not None else None,
        "longest_losing_streak": longest_losing_streak(pnls),
        "period_days": round(period_days, 4) if period_days else None,
        "trades_per_day": round(n / period_days, 2) if period_days else None,
    }


def grouped_metrics(trades: list[Trade], key: str) -> list[dict]:
    """Metrics per strategy or per symbol, largest group first."""
    groups: dict[str, list[Trade]] = {}
    for trade in trades:
        groups.setdefault(getattr(trade, key) or "(none)", []).append(trade)
    rows = [{key: name, **trade_metrics(items, period_days=1.0)} for name, items in groups.items()]
    for row in rows:
        row.pop("period_days"), row.pop("trades_per_day")
    return sorted(rows, key=lambda row: (-row["closed_trades"], row[key]))


def _plain(value: Decimal) -> str:
    """12.5000000000 → 12.5 (no exponent)."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class Criterion:
    name: str
    ok: bool
    detail: str


def shadow_verdict(
    metrics: dict, thresholds: Thresholds, *, stale_open_ids: list[int], autoclose_error: str = ""
) -> list[Criterion]:
    """The go/no-go criteria, each with a sentence saying why it passed or failed."""
    n = metrics["closed_trades"]
    low = metrics["winrate_ci95_low_pct"] or 0.0
    drawdown = metrics["max_drawdown"]
    return [
        Criterion(
            "min_trades", n >= thresholds.min_trades, f"{n} closed trades (need at least {thresholds.min_trades})"
        ),
        Criterion(
            "winrate",
            n > 0 and Decimal(str(low)) >= thresholds.min_winrate_pct,
            f"winrate {metrics['winrate_pct'] or 0}% with 95% CI lower bound {low}% "
            f"(the lower bound must be at least {_plain(thresholds.min_winrate_pct)}%)",
        ),
        Criterion(
            "max_drawdown",
            drawdown <= thresholds.max_drawdown_usdt,
            f"max drawdown {_plain(drawdown)} USDT (limit {_plain(thresholds.max_drawdown_usdt)} USDT)",
        ),
        Criterion(
            "stale_open_positions",
            not stale_open_ids,
            f"{len(stale_open_ids)} open position(s) older than {thresholds.max_open_age_hours} h"
            + (f": {', '.join(f'#{i}' for i in stale_open_ids[:20])}" if stale_open_ids else ""),
        ),
        Criterion(
            "autoclose_errors",
            not autoclose_error,
            f"auto-close errors in the period: {autoclose_error}"
            if autoclose_error
            else "no auto-close errors in the period",
        ),
    ]


def _trades(*, since: datetime | None, until: datetime | None, epoch: str | None) -> list[Trade]:
    queryset = Position.objects.closed()
    if since:
        queryset = queryset.filter(closed_at__gte=since)
    if until:
        queryset = queryset.filter(closed_at__lt=until)
    if epoch:
        queryset = queryset.filter(account_label=epoch)
    rows = queryset.order_by("closed_at", "id").values_list(
        "id", "closed_at", "pnl", "auto_close_reason", "symbol", "strategy"
    )
    return [Trade(id=i, closed_at=c, pnl=p, reason=r, symbol=s, strategy=st) for i, c, p, r, s, st in rows]


def _autoclose_error(since: datetime | None) -> str:
    """The last auto-close error when it happened in the period, else "" (the monitor keeps the last one)."""
    monitor = AutoCloseMonitor.objects.filter(pk=1).first()
    if not monitor or not monitor.errors or not monitor.last_error_at:
        return ""
    if since is not None and monitor.last_error_at < since:
        return ""
    return f"last at {monitor.last_error_at:%Y-%m-%d %H:%M:%S} UTC: {monitor.last_error[:200]}"


def shadow_report(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    epoch: str | None = None,
    thresholds: Thresholds | None = None,
    now: datetime | None = None,
) -> dict:
    """Trades closed in [since, until) of `epoch` (None: every epoch), their figures and the verdict,
    with the epoch's current equity and return (None over every epoch)."""
    now = now or timezone.now()
    thresholds = thresholds or Thresholds.from_settings()
    trades = _trades(since=since, until=until, epoch=epoch)
    period_days = ((until or now) - since).total_seconds() / 86400 if since else None
    metrics = trade_metrics(trades, period_days=period_days)
    open_positions = Position.objects.open().filter(created_at__lt=now - timedelta(hours=thresholds.max_open_age_hours))
    if epoch:
        open_positions = open_positions.filter(account_label=epoch)
    stale = list(open_positions.order_by("created_at").values_list("id", flat=True))
    criteria = shadow_verdict(metrics, thresholds, stale_open_ids=stale, autoclose_error=_autoclose_error(since))
    return {
        "generated_at": now,
        "environment": settings.ENVIRONMENT,
        "epoch": epoch or "(all epochs)",
        "since": since,
        "until": until or now,
        "thresholds": asdict(thresholds),
        "metrics": metrics,
        "equity": epoch_equity(epoch) if epoch else None,  # the epoch's now, whatever the period
        "by_strategy": grouped_metrics(trades, "strategy"),
        "by_symbol": grouped_metrics(trades, "symbol"),
        "verdict": "GO" if all(c.ok for c in criteria) else "NO-GO",
        "criteria": [asdict(c) for c in criteria],
        "failed": [c.name for c in criteria if not c.ok],
        "equity_curve": [(at, equity) for at, equity in equity_curve(trades)],
    }


def equity_svg(points: list[tuple[datetime, Decimal]], *, width: int = 800, height: int = 240) -> str:
    """An inline SVG line of the equity curve (x: trade number from the empty book, y: cumulative
    PnL), with the zero line; the geometry is oms.console.charts.equity_chart's, as on the overview."""
    if not points:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"></svg>'
    chart = equity_chart([(points[0][0], ZERO), *points], width=width, height=height, pad=10)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Equity curve">'
        f'<line x1="10" y1="{chart.zero_y:.1f}" x2="{width - 10}" y2="{chart.zero_y:.1f}" stroke="#999" '
        f'stroke-dasharray="4 3"/>'
        f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{chart.line}"/>'
        f'<text x="10" y="20" font-size="11">{chart.top_label:.2f}</text>'
        f'<text x="10" y="{height - 10}" font-size="11">{chart.bottom_label:.2f}</text></svg>'
    )
