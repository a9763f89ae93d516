"""Helpers shared by tests that use real threads or real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_together(calls: list[Callable[[], object]]) -> list[object]:
    """Run every callable in its own thread (own database connection), all released at the same
    instant; the results in order. Any exception in a thread fails the caller."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def sqlite_process_env(database: Path, **extra: str) -> dict[str, str]:
    """The environment of a LOMS process of our own on SQLite file `database`: built-in defaults
    (no .env, no inherited DATABASE_URL or Django settings), the audit log beside the database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DJANGO_"))}
    env.update(
        LOMS_ENV_FILE="/nonexistent",
        DATABASE_URL=f"sqlite:///{database}",
        AUDIT_LOG_PATH=str(database.parent / "audit.jsonl"),
        **extra,
    )
    return env


def migrated_sqlite_env(directory: Path, **extra: str) -> dict[str, str]:
    """`sqlite_process_env` for a fresh database in `directory`, migrated."""
    env = sqlite_process_env(directory / "loms.sqlite3", **extra)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return env
