"""The health report shared by `GET /health`, the dashboard and `manage.py check_health`."""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from lomsite.config import redact_url_password
from oms.models import AutoCloseMonitor
from oms.services.switch import switch_state


def auto_close_report() -> dict:
    monitor = AutoCloseMonitor.load()
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
        "last_sweep_checked": monitor.last_sweep_checked,
        "last_sweep_closed": monitor.last_sweep_closed,
        "last_sweep_failed_symbols": monitor.last_sweep_failed_symbols,
        "loop": {
            "alive": bool(monitor.lease_owner and monitor.lease_expires_at
                          and monitor.lease_expires_at > timezone.now()),
            "owner": monitor.lease_owner,
            "host": monitor.lease_host,
            "pid": monitor.lease_pid,
            "lease_expires_at": monitor.lease_expires_at.isoformat() if monitor.lease_expires_at else None,
            "loops_started": monitor.loops_started,
        },
    }


def health_report() -> dict:
    """Service state; never contains a secret. `status` is ok, degraded or error."""
    report = {
        "ok": True,
        "service": "loms",
        "status": "ok",
        "environment": settings.ENVIRONMENT,
        "broker_mode": settings.BROKER_MODE,
        "database_url": redact_url_password(settings.DATABASE_URL),
        "audit_log_path": str(settings.AUDIT_LOG_PATH),
        "price_source": settings.PRICE_SOURCE,
        "price_mode": settings.PRICE_MODE,
        "price_exchange": settings.PRICE_EXCHANGE,
    }
    try:
        state = switch_state()
        auto_close = auto_close_report()
    except DatabaseError as exc:
        connection.close()
        return {**report, "ok": False, "status": "error", "oms_enabled": False,
                "database": f"unavailable ({type(exc).__name__})"}
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
    )
    if auto_close["stale"]:
        report["status"] = "degraded"
    if settings.BROKER_MODE != "paper":  # BROKER (#11): the exchange, and its last reconciliation
        from oms.services.execution import reconcile_report

        report["broker_exchange"] = settings.BROKER_EXCHANGE
        report["reconciliation"] = reconciliation = reconcile_report()
        if reconciliation["stale"] or reconciliation["state"] != "ok":
            report["status"] = "degraded"
    return report
