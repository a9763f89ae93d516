"""The health report shared by `GET /health`, the dashboard, `manage.py check_health` and the notifier.

The status is `ok` only when no check found a reason; otherwise `degraded` with every reason, or
`error` when the database cannot be read. Each check is a small function that takes a
`HealthContext` and yields `Reason`s; `HEALTH_CHECKS` lists them in the order they are reported.
Adding a rule means writing one function and appending it to that list.

A reason's `message` is public (anonymous `/health` shows it): it never names a user, a path, a
host or the switch's free-text reason. Those go in `detail`, shown to authenticated callers only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import IntegerField, Subquery
from django.utils import timezone

from lomsite.config import redact_url_password
from oms.models import AuditSpool, AutoCloseMonitor, Position, SweepRun
from oms.services.audit import audit_spool_pending
from oms.services.switch import SwitchState, switch_state

# Keys of the report an anonymous caller sees; everything else is for authenticated callers.
PUBLIC_KEYS = (
    "ok",
    "service",
    "status",
    "reasons",
    "environment",
    "broker_mode",
    "oms_enabled",
    "database",
    "checked_at",
)


@dataclass(frozen=True)
class Reason:
    code: str  # stable identifier, e.g. "switch_off"; also the alert's dedupe key
    message: str  # public: no user names, paths, hosts or free text
    detail: str = ""  # for authenticated callers only

    def as_dict(self, *, details: bool = True) -> dict:
        data = {"code": self.code, "message": self.message}
        if details:
            data["detail"] = self.detail
        return data


@dataclass
class HealthContext:
    now: datetime
    switch: SwitchState
    monitor: AutoCloseMonitor
    auto_close: dict
    recent_sweep_errors: list[str]  # of the last HEALTH_FAILED_SWEEPS sweeps, newest first ("" for a success)
    audit_spooled: int  # audit lines spooled in the database


HealthCheck = Callable[[HealthContext], Iterable[Reason]]


def check_switch(ctx: HealthContext) -> Iterable[Reason]:
    state = ctx.switch
    if state.forced_off_by_env:
        yield Reason("switch_off", "the OMS switch is off: forced off by the environment (OMS_ENABLED=false)")
    elif not state.switch_on:
        from oms.services.trips import TRIP_ACTOR

        how = {TRIP_ACTOR: "by an automatic trip", "broker": "by the broker"}.get(state.changed_by, "by hand")
        when = state.changed_at.isoformat() if state.changed_at else "-"
        yield Reason(
            "switch_off",
            f"the OMS switch is off ({how})",
            f"switched off by {state.changed_by or '-'} at {when}: {state.reason or '-'}",
        )


def check_loop_stale(ctx: HealthContext) -> Iterable[Reason]:
    auto = ctx.auto_close
    if auto["stale"]:
        age = auto["last_sweep_age_sec"]
        when = "no sweep has run yet" if age is None else f"the last sweep was {age:.0f} s ago"
        yield Reason("loop_stale", f"auto-close is not sweeping: {when} (limit {settings.AUTO_CLOSE_STALE_SEC} s)")


def check_sweeps_failing(ctx: HealthContext) -> Iterable[Reason]:
    count, recent = settings.HEALTH_FAILED_SWEEPS, ctx.recent_sweep_errors
    if len(recent) == count and all(recent):
        yield Reason(
            "sweeps_failing",
            f"the last {count} auto-close sweeps all failed",
            f"last error: {ctx.monitor.last_error[:300]}",
        )


def _parse_time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def check_quotes(ctx: HealthContext) -> Iterable[Reason]:
    """An open position's symbol that has had no usable quote for PRICE_ALERT_AFTER_SEC."""
    failing = set(ctx.monitor.last_sweep_failed_symbols or [])
    if not failing:
        return
    open_symbols = set(Position.objects.open().filter(symbol__in=failing).values_list("symbol", flat=True).distinct())
    limit = settings.PRICE_ALERT_AFTER_SEC
    late = {}
    for symbol in sorted(open_symbols):
        entry = (ctx.monitor.quote_failures or {}).get(symbol) or {}
        since = _parse_time(entry.get("failing_since")) or _parse_time(entry.get("last_at"))
        if since and (ctx.now - since).total_seconds() >= limit:
            late[symbol] = (since, entry.get("last_error", ""))
    if late:
        yield Reason(
            "no_quote",
            f"no usable quote for {limit:g} s for open position symbol(s): {', '.join(late)}",
            "; ".join(
                f"{symbol} failing since {since.isoformat()}: {error}" for symbol, (since, error) in late.items()
            ),
        )


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_audit_writable(ctx: HealthContext) -> Iterable[Reason]:
    path = Path(settings.AUDIT_LOG_PATH)
    target = path if path.exists() else _nearest_existing(path.parent)
    if path.exists() and path.is_dir():
        writable = False
    else:
        writable = os.access(target, os.W_OK) and (target == path or target.is_dir())
    if not writable:
        yield Reason("audit_not_writable", "the audit log cannot be written", f"{path} (checked {target})")


def check_audit_spool(ctx: HealthContext) -> Iterable[Reason]:
    """Audit lines accepted but not yet written to the trail (spooled after a failed write)."""
    pending = audit_spool_pending(spooled=ctx.audit_spooled)
    if pending:
        yield Reason(
            "audit_spooled",
            f"{pending} audit line(s) wait to be written to the audit log",
            f"{settings.AUDIT_LOG_PATH}",
        )


def check_alerts(ctx: HealthContext) -> Iterable[Reason]:
    """Alerts must be able to reach someone: every NOTIFY_URLS entry valid, and the newest alert
    that finished sending was sent (a failed one means the channel is broken)."""
    from oms.models import Notification, NotificationStatus
    from oms.services.notify import notify_url_problems

    if not settings.NOTIFY_URLS:
        return
    if problems := notify_url_problems():
        yield Reason(
            "alerts_misconfigured",
            f"NOTIFY_URLS has {len(problems)} entry(ies) apprise does not understand",
            "entries #" + ", #".join(map(str, problems)),
        )
    # The newest alert a sender tried: a failed attempt (waiting for its retry, or given up) means
    # the channel is broken right now.
    last = (
        Notification.objects.filter(attempts__gt=0)
        .exclude(status=NotificationStatus.SENDING)
        .order_by("-updated_at", "-id")
        .values("status", "error", "title")
        .first()
    )
    if last and last["status"] != NotificationStatus.SENT:
        yield Reason("alerts_failing", "the last alert could not be sent", f"{last['title']}: {last['error'][:300]}")


def check_reconciliation(ctx: HealthContext) -> Iterable[Reason]:
    """Demo/live: the last reconciliation with the exchange must be recent and clean."""
    if settings.BROKER_MODE == "paper":
        return
    from oms.services.execution import reconcile_report

    report = reconcile_report()
    if report["stale"]:
        yield Reason(
            "reconciliation_stale",
            "no recent reconciliation with the exchange",
            f"last run {report['last_run_at'] or 'never'}",
        )
    elif report["state"] != "ok":
        yield Reason(
            "reconciliation_" + report["state"], f"the last reconciliation says {report['state']}", report["detail"]
        )


def check_close_failures(ctx: HealthContext) -> Iterable[Reason]:
    """Open positions whose exit failed in the last sweep (the close path isolated them)."""
    failing = ctx.monitor.close_failures or {}
    if failing:
        ids = ", ".join(
            f"#{position_id} ({entry.get('count')} sweeps: {entry.get('last_error')})"
            for position_id, entry in sorted(failing.items(), key=lambda item: int(item[0]))
        )
        yield Reason("close_failing", f"{len(failing)} open position(s) cannot be closed by the sweep", ids)


HEALTH_CHECKS: list[HealthCheck] = [
    check_switch,
    check_loop_stale,
    check_sweeps_failing,
    check_quotes,
    check_audit_writable,
    check_audit_spool,
    check_close_failures,
    check_reconciliation,
    check_alerts,
]  # the ops app appends its backup-age check (ops/health.py)


def health_reasons(ctx: HealthContext) -> list[Reason]:
    """Every reason of every check; a check that raises becomes a reason itself (health never lies)."""
    reasons: list[Reason] = []
    for check in HEALTH_CHECKS:
        try:
            reasons.extend(check(ctx))
        except DatabaseError:
            raise
        except Exception as exc:
            reasons.append(
                Reason("check_failed", f"the health check {check.__name__} failed", f"{type(exc).__name__}: {exc}")
            )
    return reasons


class _Count(Subquery):
    """The number of rows of a queryset, as a subquery."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) _counted)"
    output_field = IntegerField()


@cache
def _context_statement(vendor: str, count: int) -> tuple[str, tuple]:
    """The monitor row with the errors of the last `count` sweeps and the number of spooled audit
    lines, as subqueries: the ORM's SQL, built once (compiling it cost more than running it,
    lomsite/rowsql.py)."""
    sweeps = SweepRun.objects.order_by("-started_at", "-id").values("error")
    errors = {f"sweep_error_{i}": Subquery(sweeps[i : i + 1]) for i in range(count)}
    query = AutoCloseMonitor.objects.filter(pk=1).annotate(spooled=_Count(AuditSpool.objects.values("pk")), **errors)
    return query.query.sql_with_params()


def health_context(now: datetime, switch: SwitchState | None = None) -> HealthContext:
    """What the checks read, in one query: the monitor row with the errors of the last
    HEALTH_FAILED_SWEEPS sweeps and the number of spooled audit lines (plus the switch's row
    unless `switch` is given)."""
    count = settings.HEALTH_FAILED_SWEEPS
    sql, params = _context_statement(connection.vendor, count)
    found = list(AutoCloseMonitor.objects.raw(sql, params))
    if not found:  # created with its defaults, then read as usual
        AutoCloseMonitor.load()
        found = list(AutoCloseMonitor.objects.raw(sql, params))
    monitor = found[0]
    recent = [error for i in range(count) if (error := getattr(monitor, f"sweep_error_{i}")) is not None]
    return HealthContext(
        now=now,
        switch=switch or switch_state(),
        monitor=monitor,
        auto_close=auto_close_report(monitor),
        recent_sweep_errors=recent,
        audit_spooled=monitor.spooled,
    )


def auto_close_report(monitor: AutoCloseMonitor | None = None) -> dict:
    monitor = monitor or AutoCloseMonitor.load()
    age = (timezone.now() - monitor.last_sweep_at).total_seconds() if monitor.last_sweep_at else None
    return {
        "interval_sec": settings.AUTO_CLOSE_INTERVAL_SEC,
        "last_sweep_at": monitor.last_sweep_at.isoformat() if monitor.last_sweep_at else None,
        "last_sweep_age_sec": round(age, 3) if age is not None else None,
        "last_sweep_duration_ms": monitor.last_sweep_duration_ms,
        "stale": age is None or age > settings.AUTO_CLOSE_STALE_SEC,
        "sweeps": monitor.sweeps,
        "positions_checked": monitor.positions_checked,
        "positions_closed": monitor.positions_closed,
        "errors": monitor.errors,
        "last_error": monitor.last_error,
        "last_error_at": monitor.last_error_at.isoformat() if monitor.last_error_at else None,
        "quote_failures": monitor.quote_failures,
        "close_failures": monitor.close_failures,
        "last_sweep_checked": monitor.last_sweep_checked,
        "last_sweep_closed": monitor.last_sweep_closed,
        "last_sweep_failed_symbols": monitor.last_sweep_failed_symbols,
        "loop": {
            "alive": bool(
                monitor.lease_owner and monitor.lease_expires_at and monitor.lease_expires_at > timezone.now()
            ),
            "owner": monitor.lease_owner,
            "host": monitor.lease_host,
            "pid": monitor.lease_pid,
            "lease_expires_at": monitor.lease_expires_at.isoformat() if monitor.lease_expires_at else None,
            "loops_started": monitor.loops_started,
        },
    }


def health_report(*, details: bool = True, switch: SwitchState | None = None) -> dict:
    """Service state; never contains a secret. `status` is ok, degraded or error; `reasons` says why.
    `switch`: the switch state when the caller has just read it (a page showing both).

    With `details=False` (anonymous `/health`) only the state and the public reasons are returned:
    no database URL, paths, user names, worker host/pid or the switch's free-text reason.
    """
    now = timezone.now()
    report = {
        "ok": True,
        "service": "loms",
        "status": "ok",
        "reasons": [],
        "checked_at": now.isoformat(),
        "environment": settings.ENVIRONMENT,
        "broker_mode": settings.BROKER_MODE,
        "database_url": redact_url_password(settings.DATABASE_URL),
        "audit_log_path": str(settings.AUDIT_LOG_PATH),
        "price_source": settings.PRICE_SOURCE,
        "price_mode": settings.PRICE_MODE,
        "price_exchange": settings.PRICE_EXCHANGE,
    }
    try:
        ctx = health_context(now, switch)
        state, auto_close = ctx.switch, ctx.auto_close
        reasons = health_reasons(ctx)
    except DatabaseError as exc:
        connection.close()
        report.update(
            ok=False,
            status="error",
            oms_enabled=False,
            database=f"unavailable ({type(exc).__name__})",
            reasons=[Reason("database", "the database is unavailable", type(exc).__name__).as_dict()],
        )
        return report if details else public_report(report)
    report.update(
        database="ok",
        oms_enabled=state.enabled,
        oms_switch={
            "switch_on": state.switch_on,
            "forced_off_by_env": state.forced_off_by_env,
            "changed_by": state.changed_by,
            "changed_at": state.changed_at.isoformat() if state.changed_at else None,
            "reason": state.reason,
        },
        auto_close=auto_close,
        reasons=[reason.as_dict() for reason in reasons],
    )
    if settings.BROKER_MODE != "paper":
        from oms.services.execution import reconcile_report

        report.update(broker_exchange=settings.BROKER_EXCHANGE, reconciliation=reconcile_report())
    if reasons:
        report.update(status="degraded", ok=False)  # `ok` never says healthy when the status does not
    return report if details else public_report(report)


def public_report(report: dict) -> dict:
    """What an anonymous caller may see: the state and the reasons without their details."""
    public = {key: report[key] for key in PUBLIC_KEYS if key in report}
    public["reasons"] = [{"code": r["code"], "message": r["message"]} for r in report.get("reasons", [])]
    return public


def current_reasons() -> list[Reason]:
    """The reasons right now (for the notifier); raises DatabaseError when the database is down."""
    return health_reasons(health_context(timezone.now()))
