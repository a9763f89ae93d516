"""Django's SQLite backend that makes the database file's directory when it first connects.

Settings only name paths; importing them touches no disk (`show_config`, `check` and imports by
tools work on a read-only tree). The directory of the SQLite file is needed when a connection
opens, so it is made here. Subclassing a built-in backend is Django's documented way to extend one.
"""

from __future__ import annotations

from pathlib import Path

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        name = str(conn_params.get("database") or "")
        if name and name != ":memory:" and not name.startswith("file:"):
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        return super().get_new_connection(conn_params)
