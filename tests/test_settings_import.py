"""Importing the settings touches no disk; the SQLite directory is made when the database is opened."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NO_MKDIR = textwrap.dedent("""
    import os, pathlib, sys
    made = []
    real_mkdir, real_makedirs = pathlib.Path.mkdir, os.makedirs
    pathlib.Path.mkdir = lambda self, *a, **k: made.append(str(self)) or real_mkdir(self, *a, **k)
    os.makedirs = lambda name, *a, **k: made.append(str(name)) or real_makedirs(name, *a, **k)
    import django
    import lomsite.settings  # noqa
    django.setup()
    assert made == [], f"importing the settings made directories: {made}"
    if sys.argv[1:] == ["connect"]:
        from django.db import connection
        connection.ensure_connection()
        print("made", made)
    print("ok")
""")


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        LOMS_ENV_FILE="/nonexistent",
        DJANGO_SETTINGS_MODULE="lomsite.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'new' / 'dir' / 'loms.sqlite3'}",
        AUDIT_LOG_PATH=str(tmp_path / "audit" / "signals.jsonl"),
        BACKUP_DIR=str(tmp_path / "backups"),
    )
    return subprocess.run(
        [sys.executable, "-c", NO_MKDIR, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_importing_the_settings_and_setting_django_up_creates_no_directory(tmp_path):
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_sqlite_directory_is_made_when_the_database_is_first_opened(tmp_path):
    result = run(tmp_path, "connect")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new" / "dir" / "loms.sqlite3").is_file()
    assert str(tmp_path / "new" / "dir") in result.stdout
