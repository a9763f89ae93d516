"""django-q entry points. Thin: each calls a service."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from oms.services.auto_close import auto_close_kick, auto_close_loop_run

logger = logging.getLogger("loms.oms.auto_close")


@contextmanager
def _stop_on_shutdown_signals() -> Iterator[Callable[[], bool]]:
    """While the loop runs, SIGINT (Ctrl+C reaches the whole process group; django-q workers
    otherwise ignore it) and SIGTERM ask it to stop after the current sweep; a SIGTERM is then
    delivered again to the worker's own handler, so it still ends the process as intended."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield lambda: bool(received)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if signal.SIGTERM in received:
            os.kill(os.getpid(), signal.SIGTERM)


def auto_close_loop(handover: str = "", first_sweep_at: float | None = None) -> dict:
    """Sweep every AUTO_CLOSE_INTERVAL_SEC for AUTO_CLOSE_LOOP_SEC while holding the sweep lease,
    then enqueue the successor. Also the one-minute watchdog schedule's function."""
    with _stop_on_shutdown_signals() as stop_requested:
        result = auto_close_loop_run(handover=handover, first_sweep_at=first_sweep_at, stop_requested=stop_requested)
    return result.as_dict()


def on_worker_spawn(sender=None, proc_name: str = "", **kwargs) -> None:
    """django-q `post_spawn` (each worker start, including a replaced killed worker): make sure a
    sweep loop runs. It only takes over when the current lease lapses."""
    try:
        auto_close_kick()
    except Exception:
        logger.exception("could not enqueue the auto-close loop at worker start")


def notification_send(pk: int) -> str:
    """Send one recorded notification (enqueued by `oms.services.notify.notify`)."""
    from oms.services.notify import notification_deliver

    return notification_deliver(pk)


def notify_tick() -> dict:
    """The one-minute schedule (migration 0010): retries, lasting health reasons, the daily summary."""
    from oms.services.notify import notify_tick as tick

    return tick()


def paper_funding() -> dict:
    """Every minute (schedule `oms.paper_funding`, migration 0015): book the funding settled on the
    exchange's perpetuals on the open paper positions. Off for the simulator and with PAPER_FUNDING off."""
    from oms.services.funding import funding_run

    return funding_run().as_dict()


def broker_reconcile() -> dict:
    """Every minute (schedule `oms.broker_reconcile`, migration 0013): reconcile with the exchange
    every RECONCILE_INTERVAL_SEC for about a minute. Nothing at all in paper mode."""
    import time

    from django.conf import settings

    from oms.services.execution import reconcile

    if settings.BROKER_MODE == "paper":
        return {"state": "paper"}
    deadline = time.monotonic() + 55
    runs = []
    while True:
        runs.append(reconcile().state)
        if time.monotonic() + settings.RECONCILE_INTERVAL_SEC > deadline:
            return {"runs": runs}
        time.sleep(settings.RECONCILE_INTERVAL_SEC)
