"""gunicorn settings for LOMS (used by `manage.py serve` and the systemd unit)."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() + 1))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))
timeout = 30
graceful_timeout = 20
keepalive = 5
max_requests = 10000
max_requests_jitter = 500
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's runtime control socket is one shared path per user; several LOMS servers on one
# machine (tests, benchmarks, a second instance) would fight over it, and nothing here uses it.
control_socket_disable = True


# A worker that dies mid-request (SIGKILLed, OOM, killed by gunicorn's own `timeout`) may have
# committed signals whose audit line it never appended. Some seconds after any worker exit, the
# master runs `manage.py audit_recover` (a separate process: the master never loads Django), which
# writes the lines still missing; signals younger than the grace are left to the live workers.
AUDIT_RECOVER_DELAY_SEC = float(os.environ.get("LOMS_AUDIT_RECOVER_DELAY_SEC", 35))


def child_exit(server, worker):
    import subprocess
    import sys
    import threading
    from pathlib import Path

    def recover():
        try:
            subprocess.run(
                [sys.executable, "manage.py", "audit_recover", "--grace", str(max(1.0, AUDIT_RECOVER_DELAY_SEC - 5))],
                cwd=Path(__file__).resolve().parent.parent,
                capture_output=True,
                timeout=600,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            server.log.warning("audit_recover after a worker exit failed: %s", exc)

    timer = threading.Timer(AUDIT_RECOVER_DELAY_SEC, recover)
    timer.daemon = True  # never holds up the master's own shutdown
    timer.start()
