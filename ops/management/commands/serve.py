import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, connections

from oms.services.audit import audit_recover

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when `serve` dies, even by SIGKILL (Linux), so a
    killed `serve` never leaves a web server or cluster running on its own."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        ctypes.CDLL(libc_name, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Command(BaseCommand):
    help = (
        "Start the web server (gunicorn) and the django-q cluster together, as `make run` does. "
        "Ctrl+C (or SIGTERM) stops both; if one of them dies, the other is stopped too."
    )

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000", help="host:port for the web server")
        parser.add_argument("--no-cluster", action="store_true", help="web server only")

    def handle(self, *args, bind, no_cluster, **options):
        base = Path(settings.BASE_DIR)
        self._refuse_unless_ready(bind)
        if settings.BROKER_MODE != "paper":  # refuse to start on a failed preflight, naming it
            from django.core.management import call_command
            from django.core.management.base import CommandError

            try:
                call_command("broker_preflight", stdout=self.stdout, stderr=self.stderr)
            except CommandError as exc:
                self.stderr.write(f"serve: not starting in BROKER_MODE={settings.BROKER_MODE}: {exc}")
                sys.exit(1)
        self._complete_audit_trail()
        commands = {
            "web": [
                sys.executable,
                "-m",
                "gunicorn",
                "lomsite.wsgi:application",
                "--config",
                str(base / "deploy" / "gunicorn.conf.py"),
                "--bind",
                bind,
            ]
        }
        if not no_cluster:
            commands["cluster"] = [sys.executable, str(base / "manage.py"), "qcluster"]
        # Each in its own process group, so a stop reaches the cluster's workers too.
        processes = {
            name: subprocess.Popen(cmd, cwd=base, start_new_session=True, preexec_fn=_die_with_parent)
            for name, cmd in commands.items()
        }
        self.stdout.write(
            self.style.SUCCESS(
                f"LOMS is starting: http://{bind}/  (console login), http://{bind}/health, http://{bind}/docs\n"
                f"Processes: {', '.join(f'{n} pid {p.pid}' for n, p in processes.items())}. Ctrl+C stops all."
            )
        )
        stopping = False

        def stop(signum=None, frame=None):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        exit_code = 0
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    self.stderr.write(f"{name} exited with code {process.returncode}; stopping the rest.")
                    exit_code = process.returncode or 1
                    stopping = True
            time.sleep(0.5)
        for name, process in processes.items():
            if process.poll() is None:
                # gunicorn stops gracefully on SIGTERM; django-q's cluster on SIGINT to the whole group.
                os.killpg(process.pid, signal.SIGINT if name == "cluster" else signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        sys.exit(exit_code)

    def _refuse_unless_ready(self, bind: str) -> None:
        """Exit 1, saying why, on a database that is not migrated or an address already in use
        (before the cluster or the audit recovery touch anything)."""
        from django.db import connection
        from django.db.migrations.executor import MigrationExecutor

        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            self.stderr.write(
                f"serve: the database is not migrated ({len(pending)} migration(s) pending): "
                "run `python manage.py migrate` first."
            )
            sys.exit(1)
        host, _, port = bind.rpartition(":")
        with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host.strip("[]") or "0.0.0.0", int(port)))
            except (OSError, ValueError) as exc:
                self.stderr.write(f"serve: cannot listen on {bind}: {exc}")
                sys.exit(1)

    def _complete_audit_trail(self) -> None:
        """Before anything serves: the audit lines a killed process owed (see `audit_recover`)."""
        try:
            result = audit_recover(grace_sec=0)
        except (OSError, DatabaseError) as exc:  # e.g. not migrated yet: the server still starts
            self.stderr.write(f"audit trail not checked: {type(exc).__name__}: {exc}")
        else:
            if result.flushed or result.recovered:
                self.stdout.write(
                    f"audit trail: {result.flushed} spooled and {len(result.recovered)} missing line(s) written"
                )
        finally:
            connections.close_all()
