"""django-q entry points. Thin: each calls a service."""

from __future__ import annotations

import logging

from oms.services.auto_close import auto_close_kick, auto_close_loop_run

logger = logging.getLogger("loms.oms.auto_close")


def auto_close_loop(handover: str = "", first_sweep_at: float | None = None) -> dict:
    """Sweep every AUTO_CLOSE_INTERVAL_SEC for AUTO_CLOSE_LOOP_SEC while holding the sweep lease,
    then enqueue the successor. Also the one-minute watchdog schedule's function."""
    return auto_close_loop_run(handover=handover, first_sweep_at=first_sweep_at).as_dict()


def on_worker_spawn(sender=None, proc_name: str = "", **kwargs) -> None:
    """django-q `post_spawn` (each worker start, including a replaced killed worker): make sure a
    sweep loop runs. It only takes over when the current lease lapses."""
    try:
        auto_close_kick()
    except Exception:
        logger.exception("could not enqueue the auto-close loop at worker start")
