"""Backups of the database and the audit trail: create, verify, restore, prune, schedule.

A backup is one `YYYY-MM-DD_HHMMSS_loms_<env>_<vendor>[_<label>].tar.gz` under `BACKUP_DIR` holding
`manifest.json`, the database (`database.sqlite3` or a `pg_dump` custom-format `database.pgdump`)
and the audit files under `audit/`. The manifest lists row counts per table and the applied
migrations *as seen by the copy itself*, so they match the copy exactly while the service writes:

- SQLite: the online backup API copies the database in one step (in WAL mode a reader does not
  block the writers), then the copy is counted.
- PostgreSQL: a REPEATABLE READ transaction exports its snapshot, counts in it, and `pg_dump
  --snapshot` dumps that very snapshot.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.services.audit import audit_compress_leftovers, audit_replace_live, audit_rotate, audit_rotated_files

logger = logging.getLogger("loms.ops")

FORMAT_VERSION = 1
MIN_RETENTION_DAYS = 7
STAMP = "%Y-%m-%d_%H%M%S"
BACKUP_NAME = re.compile(
    r"^(?P<stamp>\d{4}-\d{2}-\d{2}_\d{6})_loms_(?P<env>[a-z]+)_(?P<vendor>sqlite|postgresql)"
    r"(?:_(?P<label>[a-z0-9-]+))?\.tar\.gz$"
)
DB_MEMBER = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}
SCHEDULE_NAME = "loms-daily-backup"
SCHEDULE_FUNC = "ops.backups.backup_scheduled"
# The cluster counts as running when the auto-close sweep or any django-q task ran this recently.
CLUSTER_ACTIVE_WITHIN_SEC = 120
# A backup holds the whole database (password hashes, the audit trail): its owner only.
BACKUP_FILE_MODE = 0o600
BACKUP_DIR_MODE = 0o700

Progress = Callable[[str], None]


class BackupError(Exception):
    """A backup, verification, restore or prune that cannot (or must not) proceed."""


def _quiet(message: str) -> None:
    pass


@dataclass(frozen=True)
class DatabaseTarget:
    """Where a database lives, taken from Django's connection settings (or built for a test)."""

    vendor: str  # "sqlite" or "postgresql"
    name: str  # SQLite file path or PostgreSQL database name
    user: str = ""
    password: str = ""
    host: str = ""
    port: str = ""
    alias: str | None = None  # the Django alias, when it is one (migrations run only then)

    @classmethod
    def from_alias(cls, alias: str = "default") -> DatabaseTarget:
        connection = connections[alias]
        conf = connection.settings_dict
        if connection.vendor not in DB_MEMBER:
            raise BackupError(f"backups support SQLite and PostgreSQL, not {connection.vendor}")
        return cls(
            vendor=connection.vendor,
            name=str(conf["NAME"]),
            user=conf.get("USER") or "",
            password=conf.get("PASSWORD") or "",
            host=conf.get("HOST") or "",
            port=str(conf.get("PORT") or ""),
            alias=alias,
        )

    def with_name(self, name: str) -> DatabaseTarget:
        return DatabaseTarget(self.vendor, name, self.user, self.password, self.host, self.port, alias=None)

    def describe(self) -> str:
        if self.vendor == "sqlite":
            return f"sqlite:{self.name}"
        user = f"{self.user}@" if self.user else ""
        return f"postgresql://{user}{self.host or 'localhost'}:{self.port or 5432}/{self.name}"

    def pg_args(self) -> list[str]:
        args = []
        for flag, value in (("-h", self.host), ("-p", self.port), ("-U", self.user)):
            if value:
                args += [flag, value]
        return args

    def pg_env(self) -> dict[str, str]:
        return {**os.environ, **({"PGPASSWORD": self.password} if self.password else {})}

    def psycopg_kwargs(self) -> dict[str, str]:
        values = {
            "dbname": self.name,
            "user": self.user,
            "password": self.password,
            "host": self.host,
            "port": self.port,
        }
        return {key: value for key, value in values.items() if value}


# --- naming --------------------------------------------------------------------------------------


def backup_name(*, now: datetime, environment: str, vendor: str, label: str = "") -> str:
    suffix = f"_{label}" if label else ""
    return f"{now.astimezone(UTC).strftime(STAMP)}_loms_{environment}_{vendor}{suffix}.tar.gz"


def backup_taken_at(path: Path) -> datetime | None:
    """The UTC time in a backup's file name, or None when the name is not a LOMS backup."""
    match = BACKUP_NAME.match(path.name)
    return datetime.strptime(match["stamp"], STAMP).replace(tzinfo=UTC) if match else None


def backups_list(directory: Path | None = None) -> list[tuple[datetime, Path]]:
    """LOMS backups in `directory` (default `BACKUP_DIR`), oldest first."""
    directory = Path(directory or settings.BACKUP_DIR)
    if not directory.is_dir():
        return []
    found = [(taken, path) for path in directory.iterdir() if (taken := backup_taken_at(path)) and path.is_file()]
    return sorted(found)


def app_version() -> str:
    version = settings.SPECTACULAR_SETTINGS.get("VERSION", "0")
    try:
        described = subprocess.run(
            ["git", "-C", str(settings.BASE_DIR), "describe", "--always", "--dirty", "--tags"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+{described}" if described else version


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- database snapshots --------------------------------------------------------------------------


def _sqlite_counts(conn: sqlite3.Connection) -> dict[str, int]:
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {name: conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in names}


def _sqlite_migrations(conn: sqlite3.Connection) -> list[str]:
    try:
        return [f"{app}.{name}" for app, name in conn.execute("SELECT app, name FROM django_migrations ORDER BY id")]
    except sqlite3.OperationalError:
        return []


def _sqlite_snapshot(target: DatabaseTarget, dest: Path) -> tuple[dict[str, int], list[str]]:
    if not Path(target.name).is_file():
        raise BackupError(f"the SQLite database {target.name} does not exist")
    source = sqlite3.connect(target.name, timeout=30)
    copy = sqlite3.connect(dest)
    with closing(source), closing(copy):
        source.backup(copy)  # one step: a consistent snapshot, writers keep going (WAL)
        copy.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        return _sqlite_counts(copy), _sqlite_migrations(copy)


def _pg_counts(conn) -> dict[str, int]:
    from psycopg import sql

    names = [
        row[0]
        for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
        )
    ]
    return {
        name: conn.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(name))).fetchone()[0]
        for name in names
    }


def _pg_migrations(conn) -> list[str]:
    exists = conn.execute("SELECT to_regclass('django_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return []
    return [f"{app}.{name}" for app, name in conn.execute("SELECT app, name FROM django_migrations ORDER BY id")]


def _run(command: list[str], *, env: dict[str, str] | None = None, what: str) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise BackupError(f"{what}: {command[0]} is not installed (install the PostgreSQL client tools)") from None
    if done.returncode != 0:
        raise BackupError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


def _pg_snapshot(target: DatabaseTarget, dest: Path) -> tuple[dict[str, int], list[str]]:
    import psycopg

    with psycopg.connect(**target.psycopg_kwargs()) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        counts, migrations = _pg_counts(conn), _pg_migrations(conn)
        # The transaction stays open while pg_dump reads the exported snapshot.
        _run(
            [
                "pg_dump",
                "--format=custom",
                f"--snapshot={snapshot}",
                "--file",
                str(dest),
                *target.pg_args(),
                target.name,
            ],
            env=target.pg_env(),
            what="pg_dump",
        )
        conn.rollback()
    return counts, migrations


def database_counts(target: DatabaseTarget, tables: list[str] | None = None) -> dict[str, int]:
    """Row counts per table of a live database (all tables, or the given ones; -1: missing)."""
    if target.vendor == "sqlite":
        with closing(sqlite3.connect(target.name, timeout=30)) as conn:
            counts = _sqlite_counts(conn)
    else:
        import psycopg

        with psycopg.connect(**target.psycopg_kwargs()) as conn:
            counts = _pg_counts(conn)
    return counts if tables is None else {name: counts.get(name, -1) for name in tables}


# --- create --------------------------------------------------------------------------------------


@dataclass
class BackupResult:
    path: Path
    manifest: dict


def _copy_audit(dest_dir: Path) -> dict:
    """Copy the audit files: the live one up to its last complete line, and the rotated ones."""
    live = Path(settings.AUDIT_LOG_PATH)
    dest_dir.mkdir(parents=True, exist_ok=True)
    files, live_lines = [], 0
    if live.is_file():
        data = live.read_bytes()
        data = data[: data.rfind(b"\n") + 1]  # a line being appended right now belongs to the next backup
        (dest_dir / live.name).write_bytes(data)
        files.append(live.name)
        live_lines = data.count(b"\n")
    for _, rotated in audit_rotated_files(live):
        if rotated.suffix == ".gz":
            shutil.copy2(rotated, dest_dir / rotated.name)
            files.append(rotated.name)
    return {"live_file": live.name if live.is_file() else None, "live_lines": live_lines, "files": files}


def _private_directory(directory: Path) -> None:
    """The backup directory exists and only its owner may enter it (0700), whatever the umask."""
    directory.mkdir(mode=BACKUP_DIR_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(directory.stat().st_mode) != BACKUP_DIR_MODE:
        try:
            directory.chmod(BACKUP_DIR_MODE)
        except PermissionError:  # not ours (a mounted volume): the files themselves stay 0600
            log_event(
                logger,
                "backup_dir_not_private",
                level=logging.WARNING,
                path=str(directory),
                mode=oct(stat.S_IMODE(directory.stat().st_mode)),
            )


def backup_create(
    *,
    directory: Path | None = None,
    label: str = "",
    now: datetime | None = None,
    target: DatabaseTarget | None = None,
    progress: Progress = _quiet,
) -> BackupResult:
    """Write one compressed backup of the database and the audit files, with its manifest."""
    if label and not re.fullmatch(r"[a-z0-9-]+", label):
        raise BackupError("a backup label may contain only lower-case letters, digits and '-'")
    target = target or DatabaseTarget.from_alias()
    directory = Path(directory or settings.BACKUP_DIR)
    _private_directory(directory)
    now = now or timezone.now()
    name = backup_name(now=now, environment=settings.ENVIRONMENT, vendor=target.vendor, label=label)
    final = directory / name
    if final.exists():
        raise BackupError(f"{final} already exists (two backups in the same second?)")
    with tempfile.TemporaryDirectory(dir=directory, prefix=".backup-") as work:
        work_dir = Path(work)
        member = DB_MEMBER[target.vendor]
        progress(f"copying the database ({target.describe()})…")
        snapshot = _sqlite_snapshot if target.vendor == "sqlite" else _pg_snapshot
        tables, migrations = snapshot(target, work_dir / member)
        progress(f"  {len(tables)} tables, {sum(tables.values())} rows")
        progress("copying the audit files…")
        audit = _copy_audit(work_dir / "audit")
        progress(f"  {len(audit['files'])} file(s), {audit['live_lines']} lines in the live file")
        members = [member] + [f"audit/{file}" for file in audit["files"]]
        progress("computing checksums…")
        files = {m: {"sha256": sha256_of(work_dir / m), "bytes": (work_dir / m).stat().st_size} for m in members}
        latest: dict[str, str] = {}
        for applied in migrations:
            app, _, migration = applied.partition(".")
            latest[app] = migration
        manifest = {
            "format": FORMAT_VERSION,
            "created_at": now.astimezone(UTC).isoformat(),
            "environment": settings.ENVIRONMENT,
            "label": label,
            "app_version": app_version(),
            "database": {"vendor": target.vendor, "source": target.describe(), "member": member},
            "tables": tables,
            "total_rows": sum(tables.values()),
            "migrations": {"count": len(migrations), "latest": latest, "applied": migrations},
            "audit": audit,
            "files": files,
        }
        progress(f"compressing into {final.name}…")
        partial = work_dir / (name + ".partial")
        with tarfile.open(partial, "w:gz") as archive:
            body = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mtime = len(body), int(now.timestamp())
            archive.addfile(info, io.BytesIO(body))
            for m in members:
                archive.add(work_dir / m, arcname=m)
        partial.chmod(BACKUP_FILE_MODE)
        os.replace(partial, final)  # a backup file is complete or absent
    log_event(
        logger,
        "backup_created",
        path=str(final),
        bytes=final.stat().st_size,
        tables=len(tables),
        rows=manifest["total_rows"],
        vendor=target.vendor,
    )
    return BackupResult(path=final, manifest=manifest)


# --- verify --------------------------------------------------------------------------------------


@dataclass
class VerifyResult:
    path: Path
    manifest: dict | None = None
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def backup_read_manifest(path: Path) -> dict:
    try:
        with tarfile.open(path, "r:gz") as archive:
            handle = archive.extractfile("manifest.json")
            if handle is None:
                raise BackupError(f"{path.name}: manifest.json is not a file")
            return json.loads(handle.read())
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupError(f"{path.name}: not a readable .tar.gz ({exc})") from None
    except KeyError:
        raise BackupError(f"{path.name}: no manifest.json inside (not a LOMS backup)") from None
    except json.JSONDecodeError as exc:
        raise BackupError(f"{path.name}: manifest.json is not valid JSON ({exc})") from None


def _extract(path: Path, into: Path) -> None:
    with tarfile.open(path, "r:gz") as archive:
        archive.extractall(into, filter="data")


def _compare_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    return [
        f"table {table}: {actual.get(table, 'missing')} rows, the manifest says {count}"
        for table, count in sorted(expected.items())
        if actual.get(table) != count
    ]


def backup_verify(path: Path, *, deep: bool = False, progress: Progress = _quiet) -> VerifyResult:
    """Check a backup: readable archive, checksums, database integrity and row counts vs manifest.

    SQLite copies are always opened and counted. A PostgreSQL dump is checked with `pg_restore
    --list`; with `deep` it is also restored into a throw-away database and counted.
    """
    path = Path(path)
    result = VerifyResult(path=path)
    try:
        manifest = result.manifest = backup_read_manifest(path)
    except BackupError as exc:
        result.problems.append(str(exc))
        return result
    if manifest.get("format") != FORMAT_VERSION:
        result.problems.append(f"unknown manifest format {manifest.get('format')!r}")
        return result
    with tempfile.TemporaryDirectory(prefix="loms-verify-") as work:
        work_dir = Path(work)
        progress("extracting…")
        try:
            _extract(path, work_dir)
        except (tarfile.TarError, OSError, EOFError) as exc:
            result.problems.append(f"the archive is damaged: {exc}")
            return result
        progress("checking checksums…")
        for member, expected in sorted(manifest["files"].items()):
            file = work_dir / member
            if not file.is_file():
                result.problems.append(f"{member}: missing from the archive")
            elif file.stat().st_size != expected["bytes"] or sha256_of(file) != expected["sha256"]:
                result.problems.append(f"{member}: checksum mismatch")
        extra = {str(p.relative_to(work_dir)) for p in work_dir.rglob("*") if p.is_file()}
        for member in sorted(extra - set(manifest["files"]) - {"manifest.json"}):
            result.problems.append(f"{member}: in the archive but not in the manifest")
        if result.problems:
            return result
        result.checks.append(f"{len(manifest['files'])} file checksums match")
        database = manifest["database"]
        db_file = work_dir / database["member"]
        if database["vendor"] == "sqlite":
            progress("checking the SQLite copy…")
            with closing(sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)) as conn:
                integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
                if integrity != "ok":
                    result.problems.append(f"SQLite integrity check: {integrity}")
                    return result
                result.checks.append("SQLite integrity check: ok")
                mismatches = _compare_counts(manifest["tables"], _sqlite_counts(conn))
                migrations = _sqlite_migrations(conn)
        else:
            progress("listing the pg_dump archive…")
            try:
                listing = _run(["pg_restore", "--list", str(db_file)], what="pg_restore --list")
            except BackupError as exc:
                result.problems.append(str(exc))
                return result
            entries = sum(1 for line in listing.stdout.splitlines() if " TABLE DATA " in line)
            result.checks.append(f"pg_restore --list: readable, {entries} table data entries")
            if not deep:
                return result
            mismatches, migrations = _pg_deep_check(db_file, manifest, progress)
        result.problems.extend(mismatches)
        if not mismatches:
            result.checks.append(
                f"row counts match the manifest ({len(manifest['tables'])} tables, {manifest['total_rows']} rows)"
            )
        if len(migrations) != manifest["migrations"]["count"]:
            result.problems.append(
                f"{len(migrations)} applied migrations, the manifest says {manifest['migrations']['count']}"
            )
    return result


def _pg_deep_check(dump: Path, manifest: dict, progress: Progress) -> tuple[list[str], list[str]]:
    import psycopg

    base = DatabaseTarget.from_alias()
    if base.vendor != "postgresql":
        return ["a deep check of a PostgreSQL dump needs DATABASE_URL to point to a PostgreSQL server"], []
    scratch = base.with_name(f"loms_verify_{os.getpid()}_{int(timezone.now().timestamp())}")
    progress(f"restoring into the scratch database {scratch.name}…")
    _run(["createdb", *scratch.pg_args(), scratch.name], env=scratch.pg_env(), what="createdb")
    try:
        _pg_restore(dump, scratch)
        with psycopg.connect(**scratch.psycopg_kwargs()) as conn:
            counts, migrations = _pg_counts(conn), _pg_migrations(conn)
        return _compare_counts(manifest["tables"], counts), migrations
    finally:
        _run(["dropdb", "--if-exists", *scratch.pg_args(), scratch.name], env=scratch.pg_env(), what="dropdb")


# --- restore -------------------------------------------------------------------------------------


@dataclass
class RestoreResult:
    path: Path
    target: str
    safety_backup: Path | None
    tables: dict[str, int]
    migrate_output: str = ""
    audit_files: list[str] = field(default_factory=list)


def cluster_activity(*, now: datetime | None = None) -> str | None:
    """Why we believe the django-q cluster is running, or None.

    Two traces, both in the database so they work across processes and hosts: the auto-close
    sweep (run by the cluster every AUTO_CLOSE_INTERVAL_SEC) stamps `AutoCloseMonitor.last_sweep_at`,
    and every finished django-q task stamps `Task.stopped`. Either within the last
    CLUSTER_ACTIVE_WITHIN_SEC seconds means a cluster is (or was just) alive.
    """
    from django_q.models import Task

    from oms.models import AutoCloseMonitor

    now = now or timezone.now()
    horizon = now - timedelta(seconds=CLUSTER_ACTIVE_WITHIN_SEC)
    try:
        monitor = AutoCloseMonitor.objects.filter(pk=1).first()
        task = Task.objects.filter(stopped__gte=horizon).order_by("-stopped").first()
    except DatabaseError:  # an empty database (fresh machine): no cluster has ever run against it
        connections["default"].close()
        return None
    if monitor and monitor.last_sweep_at and monitor.last_sweep_at >= horizon:
        return f"the auto-close sweep ran {(now - monitor.last_sweep_at).total_seconds():.0f} s ago"
    if task:
        return f"the django-q task {task.func} finished {(now - task.stopped).total_seconds():.0f} s ago"
    return None


def _target_is_empty(target: DatabaseTarget) -> bool:
    if target.vendor == "sqlite":
        path = Path(target.name)
        return not path.is_file() or path.stat().st_size == 0 or not database_counts(target)
    return not database_counts(target)


def _pg_restore(dump: Path, target: DatabaseTarget) -> None:
    _run(
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            *target.pg_args(),
            "--dbname",
            target.name,
            str(dump),
        ],
        env=target.pg_env(),
        what="pg_restore",
    )


def _sqlite_restore(copy: Path, target: DatabaseTarget) -> None:
    Path(target.name).parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    dest = sqlite3.connect(target.name, timeout=30)
    with closing(source), closing(dest):
        # Page by page into the live file under its write lock: open connections (web server)
        # see the restored content at their next transaction, no file is swapped under them.
        source.backup(dest)


def _restore_audit(work_dir: Path, manifest: dict) -> list[str]:
    live = Path(settings.AUDIT_LOG_PATH)
    live.parent.mkdir(parents=True, exist_ok=True)
    placed = []
    for name in manifest["audit"]["files"]:
        source = work_dir / "audit" / name
        if name == manifest["audit"].get("live_file"):
            # The current trail is kept, compressed, next to it; renamed and replaced in one step
            # under the audit lock, so a line appended during the restore is never overwritten.
            audit_replace_live(source, path=live)
            placed.append(live.name)
        elif not (live.parent / name).exists():
            shutil.copy2(source, live.parent / name)
            placed.append(name)
    return placed


def backup_restore(
    *,
    path: Path,
    target: DatabaseTarget | None = None,
    safety_backup: bool = True,
    restore_audit: bool = True,
    progress: Progress = _quiet,
) -> RestoreResult:
    """Replace the target database with the backup: verify, safety backup, restore, count, migrate.

    The caller decides whether it is allowed (confirmation, cluster stopped): see `manage.py restore`.
    """
    from django.core.management import call_command

    path = Path(path)
    target = target or DatabaseTarget.from_alias()
    progress(f"verifying {path.name}…")
    verified = backup_verify(path)
    if not verified.ok:
        raise BackupError(f"{path.name} does not verify: " + "; ".join(verified.problems))
    manifest = verified.manifest
    if manifest["database"]["vendor"] != target.vendor:
        raise BackupError(
            f"{path.name} holds a {manifest['database']['vendor']} database; the target is "
            f"{target.vendor} (a cross-engine move needs dumpdata/loaddata, see docs/RUNBOOK.md)"
        )
    safety = None
    if safety_backup and not _target_is_empty(target):
        progress("taking a safety backup of the current database…")
        safety = backup_create(label="pre-restore", target=target, progress=progress).path
        progress(f"  safety backup: {safety}")
    if target.alias:
        connections[target.alias].close()
    with tempfile.TemporaryDirectory(prefix="loms-restore-") as work:
        work_dir = Path(work)
        _extract(path, work_dir)
        progress(f"restoring the database into {target.describe()}…")
        db_file = work_dir / manifest["database"]["member"]
        if target.vendor == "sqlite":
            _sqlite_restore(db_file, target)
        else:
            _pg_restore(db_file, target)
        progress("counting rows…")
        counts = database_counts(target, list(manifest["tables"]))
        mismatches = _compare_counts(manifest["tables"], counts)
        if mismatches:
            raise BackupError(
                "restored, but the counts differ from the manifest: "
                + "; ".join(mismatches)
                + (f" (the previous database is in {safety})" if safety else "")
            )
        audit_files = _restore_audit(work_dir, manifest) if restore_audit else []
    output = io.StringIO()
    if target.alias:
        progress("applying migrations…")
        call_command("migrate", database=target.alias, interactive=False, verbosity=1, stdout=output)
        progress("rebuilding the book figures…")  # from the restored positions (oms.services.figures)
        from oms.services.figures import book_figures_rebuild

        book_figures_rebuild(using=target.alias)
    log_event(
        logger,
        "backup_restored",
        path=str(path),
        target=target.describe(),
        rows=sum(counts.values()),
        safety_backup=str(safety) if safety else None,
    )
    return RestoreResult(
        path=path,
        target=target.describe(),
        safety_backup=safety,
        tables=counts,
        migrate_output=output.getvalue(),
        audit_files=audit_files,
    )


# --- prune ---------------------------------------------------------------------------------------


@dataclass
class PruneResult:
    retention_days: int
    deleted: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    audit_deleted: list[Path] = field(default_factory=list)


def backups_prune(
    *,
    directory: Path | None = None,
    retention_days: int | None = None,
    force: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneResult:
    """Delete backups and rotated audit files older than the retention; the newest backup always stays."""
    retention = settings.BACKUP_RETENTION_DAYS if retention_days is None else retention_days
    if retention < 0 or (retention < MIN_RETENTION_DAYS and not force):
        raise BackupError(
            f"a retention of {retention} days is below the minimum of {MIN_RETENTION_DAYS} "
            "(use --force if you really mean it)"
        )
    cutoff = (now or timezone.now()) - timedelta(days=retention)
    result = PruneResult(retention_days=retention)
    backups = backups_list(directory)
    for index, (taken, path) in enumerate(backups):
        newest = index == len(backups) - 1
        if taken < cutoff and not newest:
            result.deleted.append(path)
        else:
            result.kept.append(path)
    result.audit_deleted = [path for rotated_at, path in audit_rotated_files() if rotated_at < cutoff]
    if not dry_run:
        for path in result.deleted + result.audit_deleted:
            path.unlink(missing_ok=True)
        if result.deleted or result.audit_deleted:
            log_event(
                logger,
                "backups_pruned",
                deleted=[p.name for p in result.deleted],
                audit_deleted=[p.name for p in result.audit_deleted],
                retention_days=retention,
            )
    return result


# --- schedule ------------------------------------------------------------------------------------


def next_daily_run(at: str, now: datetime | None = None) -> datetime:
    """The next UTC datetime at "HH:MM" strictly after `now`."""
    now = (now or timezone.now()).astimezone(UTC)
    hour, minute = (int(part) for part in at.split(":"))
    candidate = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate > now else candidate + timedelta(days=1)


def backup_schedule_ensure(**kwargs) -> object | None:
    """Create, update or (when disabled) remove the daily backup schedule. Idempotent.

    Connected to `post_migrate`, so every `manage.py migrate` (first install, upgrade) applies
    the current BACKUP_SCHEDULE_ENABLED and BACKUP_DAILY_AT.
    """
    from django_q.models import Schedule

    if kwargs.get("using", "default") != "default":
        return None
    if not settings.BACKUP_SCHEDULE_ENABLED:
        Schedule.objects.filter(name=SCHEDULE_NAME).delete()
        return None
    next_run = next_daily_run(settings.BACKUP_DAILY_AT)
    existing = Schedule.objects.filter(name=SCHEDULE_NAME).first()
    pending = existing.next_run if existing else None
    if pending and pending > timezone.now() and pending.astimezone(UTC).strftime("%H:%M") == settings.BACKUP_DAILY_AT:
        next_run = existing.next_run  # unchanged time: keep the pending run
    schedule, _ = Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": SCHEDULE_FUNC,
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
            "next_run": next_run,
            "args": None,
            "kwargs": None,
        },
    )
    return schedule


def backup_scheduled() -> str:
    """The daily django-q task: rotate the audit trail if due, back up, verify, prune. A failure
    is sent as an alert (NOTIFY_URLS) and raised, so the task is recorded as failed too."""
    try:
        return _backup_scheduled()
    except Exception as exc:
        from oms.services.notify import notify_backup_failed

        notify_backup_failed(f"{type(exc).__name__}: {exc}")
        raise


def _backup_scheduled() -> str:
    rotated = audit_rotate()
    audit_compress_leftovers()
    created = backup_create()
    verified = backup_verify(created.path)
    if not verified.ok:
        log_event(
            logger, "backup_verify_failed", level=logging.ERROR, path=str(created.path), problems=verified.problems
        )
        raise BackupError(f"{created.path.name} does not verify: " + "; ".join(verified.problems))
    summary = f"backup {created.path.name} ({created.manifest['total_rows']} rows) verified"
    if rotated:
        summary += f"; audit rotated to {rotated.name}"
    if settings.BACKUP_RETENTION_DAYS < MIN_RETENTION_DAYS:
        log_event(
            logger,
            "backup_prune_skipped",
            level=logging.WARNING,
            retention_days=settings.BACKUP_RETENTION_DAYS,
            reason=f"below the minimum of {MIN_RETENTION_DAYS} days; run prune_backups --force by hand",
        )
        return summary + "; prune skipped (retention below the minimum)"
    pruned = backups_prune()
    return summary + f"; pruned {len(pruned.deleted)} backup(s), {len(pruned.audit_deleted)} audit file(s)"
