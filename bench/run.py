#!/usr/bin/env python
"""LOMS benchmarks: `make bench` (or `.venv/bin/python bench/run.py --help`).

Creates a throw-away SQLite database (or uses DATABASE_URL for PostgreSQL: the database name
must contain "bench", it is wiped), migrates, seeds, starts the production-like server
(`manage.py serve`: gunicorn with deploy/gunicorn.conf.py + qcluster, paper profile behind a
TLS proxy) on a free port, and drives it from this process over keep-alive connections on
127.0.0.1. Prints the figures and writes bench/results/<date>.json. Never part of `make test`.

Workloads (docs/PERFORMANCE.md): W1 ingest, W2 sweep (in-process, server stopped),
W3 stats, W4 positions, W5 dashboard pages. W2–W5 run at two sizes (--sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import RequestSpec, run_load  # noqa: E402

SECRET = "bench-secret-key-not-for-production-0123456789abcdefghijklmnopqrstuvwxyz"
TARGETS = {
    "w1_c1_p50_ms": 5.0,
    "w1_c16_rps": 300.0,
    "w1_c16_p99_ms": 100.0,
    "w2_no_trigger_ms": 150.0,
    "w2_close_all_ms": 2000.0,
    "w3_p50_ms": 50.0,
    "w4_p50_ms": 30.0,
    "w5_p50_ms": 100.0,
    "after_close_p50_ms": 20.0,  # W3/W5: the first request after an open and a close
}


# W1's figures per concurrency level, as printed (and compared by bench/compare_ingest.py).
W1_FIGURES = (
    "throughput_rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "non_2xx",
    "server_cpu_ms_per_signal",
    "client_cpu_ms_per_request",  # the load generator's own: it shares the machine's cores
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="w1,w2,w3,w4,w5,w6", help="comma-separated subset of w1..w6")
    parser.add_argument("--sizes", default="20000,200000", help="position counts for W3-W5 (ascending)")
    parser.add_argument("--sweep-sizes", default="1000,10000", help="open positions for W2 (ascending)")
    parser.add_argument("--signals", type=int, default=2000, help="signals per W1 phase")
    parser.add_argument("--reads", type=int, default=40, help="requests per read endpoint (W3-W5)")
    parser.add_argument("--concurrency", default="1,16,64", help="W1 concurrency levels")
    parser.add_argument("--out", default="", help="result file (default bench/results/<date>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, server log)")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def configure_environment(tmp: Path) -> dict[str, str]:
    """The settings of a paper deployment on this machine, shared by this process and the server."""
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp / 'loms.sqlite3'}"
    if not database_url.startswith("sqlite") and "bench" not in database_url.rsplit("/", 1)[-1]:
        raise SystemExit("DATABASE_URL: the benchmark wipes its database; use one whose name contains 'bench'")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        LOMS_ENV_FILE="/nonexistent",
        DJANGO_SETTINGS_MODULE="lomsite.settings",
        ENVIRONMENT="paper",
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        AUDIT_LOG_PATH=str(tmp / "audit" / "signals.jsonl"),
        BACKUP_SCHEDULE_ENABLED="false",
        # Fixed quotes at 100: seeded positions stay open and W1 positions (TP 104.5 / SL 98.5) never trigger.
        PRICE_SOURCE="exchange",
        PRICE_EXCHANGE="dummy",
        # "Generous limits": every risk check runs, none blocks.
        MAX_OPEN_POSITIONS="1000000",
        MAX_OPEN_POSITIONS_PER_SYMBOL="100000",
        MAX_SIZE_PER_POSITION_USDT="1000000",
        MAX_TOTAL_EXPOSURE_USDT="100000000000",
    )
    os.environ.clear()
    os.environ.update(env)
    return env


def machine_info() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "ram_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# --- server process --------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_tree(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def server_cpu_seconds(root_pid: int) -> dict[str, float]:
    """CPU (user+sys, including reaped children) of the gunicorn processes and of the cluster."""
    totals = {"gunicorn": 0.0, "cluster": 0.0}
    for pid in _proc_tree(root_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        kind = "gunicorn" if "gunicorn" in cmdline else "cluster" if "qcluster" in cmdline else None
        if kind:
            own = utime + stime
            # Reaped children are counted by their parent once; count them only at the top of each kind.
            totals[kind] += (own + (cutime + cstime if _is_top(pid, kind) else 0)) / CLK_TCK
    return totals


def _is_top(pid: int, kind: str) -> bool:
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        parent = Path(f"/proc/{ppid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True
    return ("gunicorn" if kind == "gunicorn" else "qcluster") not in parent


class Server:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{self.port}"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(time.monotonic() + 60)

    def _wait_ready(self, deadline: float) -> None:
        import http.client

        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with code {self.process.returncode}; see {self.log.name}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/health", headers={"X-Forwarded-Proto": "https"})
                connection.getresponse().read()
                # Give every gunicorn worker a moment to import the app before timing anything.
                time.sleep(2)
                return
            except OSError:
                time.sleep(0.3)
        raise SystemExit("the server did not answer /health within 60 s")

    def cpu(self) -> dict[str, float]:
        return server_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


# --- data set-up (this process talks to the same database) -------------------------------------


def prepare_database() -> dict[str, str]:
    """Migrate a clean database; create the bot's token and a console session. Returns headers."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group, User
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.db import connection

    from apitokens.models import ApiToken

    if connection.vendor != "sqlite":
        # Emptied by dropping its tables, not by `flush`, which would also remove what the data
        # migrations created (the roles' groups) without running them again.
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA public CASCADE")
            cursor.execute("CREATE SCHEMA public")
    call_command("migrate", interactive=False, verbosity=0)
    bot = User.objects.create_user("benchbot", password=None)
    bot.groups.add(Group.objects.get(name="bot"))
    viewer = User.objects.create_user("benchviewer", password=None)
    viewer.groups.add(Group.objects.get(name="viewer"))
    session = SessionStore()
    session[SESSION_KEY] = str(viewer.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]
    session[HASH_SESSION_KEY] = viewer.get_session_auth_hash()
    session.create()
    return {
        "token": ApiToken.issue(bot),
        "cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}",
    }


def position_count() -> int:
    from oms.models import Position

    return Position.objects.count()


def db_close() -> None:
    from django.db import connections

    connections.close_all()


# --- workloads ---------------------------------------------------------------------------------


def w1_ingest(server: Server, auth: dict, *, signals: int, levels: list[int]) -> dict:
    from bench.seed import SYMBOLS, close_all_open

    base = {"Content-Type": "application/json", "Authorization": f"Token {auth['token']}", "X-Forwarded-Proto": "https"}

    def maker(phase: str):
        def make(i: int) -> RequestSpec:
            body = {
                "symbol": SYMBOLS[i % 100],
                "side": "BUY" if i % 2 else "SELL",
                "price": 100.0 + (i % 7) / 10,
                "timestamp": "2026-01-01T00:00:00Z",
                "tp_pct": 4.5,
                "sl_pct": 1.5,
                "strategy": "bench",
                "signal_id": f"{phase}-{i}",
            }
            return "POST", "/signals/bounce", json.dumps(body).encode(), base

        return make

    run_load(host="127.0.0.1", port=server.port, make_request=maker("warmup"), count=100, concurrency=4)
    results = {}
    for level in levels:
        close_all_open()
        db_close()
        cpu_before = server.cpu()
        outcome = run_load(
            host="127.0.0.1",
            port=server.port,
            make_request=maker(f"c{level}"),
            count=signals,
            concurrency=level,
            time_limit_s=300,
        )
        cpu_after = server.cpu()
        summary = outcome.summary()
        web_cpu = cpu_after["gunicorn"] - cpu_before["gunicorn"]
        summary["server_cpu_ms_per_signal"] = round(1000 * web_cpu / max(outcome.sent, 1), 2)
        summary["cluster_cpu_s"] = round(cpu_after["cluster"] - cpu_before["cluster"], 2)
        results[f"c{level}"] = summary
        print_line(f"W1 ingest c={level:<3}", summary, W1_FIGURES)
    results["floor"] = w1_floor(server, count=signals)
    close_all_open()
    db_close()
    return results


def w1_floor(server: Server, *, count: int) -> dict:
    """The server's CPU for a request that does no intake work: W1's POST with a token that does not
    exist, answered 401 after gunicorn, the middleware, DRF and the token lookup. A signal's CPU
    beyond this floor is the intake's own (docs/PERFORMANCE.md, "Ingest under concurrency")."""
    headers = {"Content-Type": "application/json", "Authorization": "Token not-a-token", "X-Forwarded-Proto": "https"}
    body = json.dumps({"symbol": "BTCUSDT", "side": "BUY", "price": 100.0, "timestamp": "2026-01-01T00:00:00Z"})
    body = body.encode()
    cpu_before = server.cpu()
    outcome = run_load(
        host="127.0.0.1",
        port=server.port,
        make_request=lambda i: ("POST", "/signals/bounce", body, headers),
        count=count,
        concurrency=1,
    )
    web_cpu = server.cpu()["gunicorn"] - cpu_before["gunicorn"]
    summary = {
        "requests": outcome.sent,
        "statuses": outcome.summary()["statuses"],
        "server_cpu_ms_per_request": round(1000 * web_cpu / max(outcome.sent, 1), 2),
    }
    print_line("W1 floor (401) c=1", summary, ("requests", "statuses", "server_cpu_ms_per_request"))
    return summary


def read_endpoint(server: Server, path: str, headers: dict, count: int) -> dict:
    make = lambda i: ("GET", path, None, headers)  # noqa: E731
    # The first request after seeding finds no cached figures: reported apart as `first_ms` (cold).
    first = run_load(host="127.0.0.1", port=server.port, make_request=make, count=1, concurrency=1).summary()
    run_load(host="127.0.0.1", port=server.port, make_request=make, count=2, concurrency=1)  # warm caches
    outcome = run_load(host="127.0.0.1", port=server.port, make_request=make, count=count, concurrency=1)
    return {**outcome.summary(), "first_ms": first["p50_ms"]}


def open_and_close() -> None:
    """One trade through the services (open, then close at market): the book version changes, the
    maintained figures move, every cached figure is stale."""
    from oms.services.positions import PositionRequest, position_close, position_open

    opened = position_open(
        request=PositionRequest(
            exchange="bitget",
            symbol="S001USDT",
            side="long",
            qty=Decimal("1"),
            entry_price=Decimal("100"),
            tp_price=Decimal("150"),
            sl_price=Decimal("50"),
            strategy="bench_after_close",
        )
    )
    position_close(position=opened.position, price=Decimal("101"), reason="manual")
    db_close()


def after_close(server: Server, path: str, headers: dict, count: int) -> dict:
    """The first request after each of `count` closes: what the console's refresh pays after a trade."""
    durations = []
    for _ in range(count):
        open_and_close()
        summary = run_load(
            host="127.0.0.1",
            port=server.port,
            make_request=lambda i: ("GET", path, None, headers),
            count=1,
            concurrency=1,
        ).summary()
        durations.append(summary["p50_ms"])
    durations.sort()
    return {
        "after_close_p50_ms": round(durations[len(durations) // 2], 2),
        "after_close_max_ms": round(durations[-1], 2),
        "after_close_n": count,
    }


def read_workloads(server: Server, auth: dict, *, size: int, reads: int, workloads: set[str]) -> dict:
    api = {"Authorization": f"Token {auth['token']}", "X-Forwarded-Proto": "https", "Accept": "application/json"}
    page = {"Cookie": auth["cookie"], "X-Forwarded-Proto": "https", "Accept": "text/html"}
    plan = []
    if "w3" in workloads:
        plan += [("w3", "stats", "/stats", api), ("w3", "stats group_by=symbol", "/stats?group_by=symbol", api)]
    if "w4" in workloads:
        plan += [
            ("w4", "positions page 1", "/positions", api),
            ("w4", "positions filtered", "/positions?symbol=S042USDT&status=closed&strategy=breakout_v2", api),
        ]
    if "w5" in workloads:
        plan += [("w5", "dashboard overview", "/", page), ("w5", "dashboard positions", "/console/positions", page)]
    results = {}
    for workload, label, path, headers in plan:
        summary = read_endpoint(server, path, headers, reads)
        summary["path"] = path
        if workload in ("w3", "w5") and path != "/console/positions":
            summary.update(after_close(server, path, headers, max(5, reads // 4)))
        results.setdefault(workload, {})[label] = summary
        print_line(
            f"{workload.upper()} {label} @{size}",
            summary,
            ("p50_ms", "p95_ms", "max_ms", "first_ms", "after_close_p50_ms", "non_2xx"),
        )
    return results


def w2_sweep(sizes: list[int]) -> dict:
    """Sweep cost in this process: N open positions over 100 symbols, no trigger and all closing."""
    from bench.bench_sweep import measure_sweep

    results = {}
    for size in sizes:
        results[str(size)] = measure_sweep(open_positions=size, symbols=100)
        for label, fig in results[str(size)].items():
            print_line(f"W2 sweep {size} open, {label}", fig, tuple(fig.keys()))
    return results


# --- reporting ---------------------------------------------------------------------------------


def print_line(label: str, summary: dict, keys: tuple) -> None:
    parts = ", ".join(f"{k}={summary.get(k)}" for k in keys if k in summary)
    print(f"  {label:<40} {parts}", flush=True)


def verdicts(results: dict, sizes: list[int]) -> dict:
    """Each target with the measured figure and met/missed."""
    checks = {}
    w1 = results.get("w1", {})
    if "c1" in w1:
        checks["W1 p50 at c1 <= 5 ms"] = (w1["c1"]["p50_ms"], w1["c1"]["p50_ms"] <= TARGETS["w1_c1_p50_ms"])
    if "c16" in w1:
        checks["W1 >= 300 signals/s at c16"] = (
            w1["c16"]["throughput_rps"],
            w1["c16"]["throughput_rps"] >= TARGETS["w1_c16_rps"],
        )
        checks["W1 p99 at c16 <= 100 ms"] = (w1["c16"]["p99_ms"], w1["c16"]["p99_ms"] <= TARGETS["w1_c16_p99_ms"])
    for level, figures in w1.items():
        if level == "floor":  # answered 401 on purpose
            continue
        checks[f"W1 0 errors at {level}"] = (figures["non_2xx"], figures["non_2xx"] == 0)
    w2 = results.get("w2", {})
    biggest = str(max((int(k) for k in w2 if k.isdigit()), default=0))
    if biggest in w2:
        fig = w2[biggest]
        checks[f"W2 no-trigger sweep of {biggest} <= 150 ms"] = (
            fig["no_trigger"]["ms"],
            fig["no_trigger"]["ms"] <= TARGETS["w2_no_trigger_ms"],
        )
        checks[f"W2 close-all sweep of {biggest} <= 2 s"] = (
            fig["close_all"]["ms"],
            fig["close_all"]["ms"] <= TARGETS["w2_close_all_ms"],
        )
    w6 = results.get("w6", {})
    if "seconds" in w6:
        checks[f"W6 flatten {w6['positions']} positions <= 60 s, flat"] = (w6["seconds"], w6["ok"])
    top = str(sizes[-1]) if sizes else None
    for workload, target in (("w3", "w3_p50_ms"), ("w4", "w4_p50_ms"), ("w5", "w5_p50_ms")):
        for label, fig in results.get("reads", {}).get(top, {}).get(workload, {}).items():
            checks[f"{workload.upper()} {label} p50 @{top} <= {TARGETS[target]:g} ms"] = (
                fig["p50_ms"],
                fig["p50_ms"] is not None and fig["p50_ms"] <= TARGETS[target] and fig["non_2xx"] == 0,
            )
            if "after_close_p50_ms" in fig:
                limit = TARGETS["after_close_p50_ms"]
                checks[f"{workload.upper()} {label} right after a close p50 @{top} <= {limit:g} ms"] = (
                    fig["after_close_p50_ms"],
                    fig["after_close_p50_ms"] <= limit,
                )
    return {name: {"measured": value, "met": met} for name, (value, met) in checks.items()}


def scaling(results: dict, sizes: list[int]) -> dict:
    if len(sizes) < 2:
        return {}
    small, big = str(sizes[0]), str(sizes[-1])
    ratios = {}
    reads = results.get("reads", {})
    for workload in ("w3", "w4", "w5"):
        for label, fig in reads.get(big, {}).get(workload, {}).items():
            before = reads.get(small, {}).get(workload, {}).get(label)
            if before and before["p50_ms"]:
                ratios[f"{workload} {label}"] = round(fig["p50_ms"] / before["p50_ms"], 2)
    return {"rows": f"{big}/{small} = {int(big) / int(small):g}x", "p50_ratio": ratios}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workloads = {w.strip().lower() for w in args.workloads.split(",") if w.strip()}
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    sweep_sizes = sorted(int(s) for s in args.sweep_sizes.split(",") if s.strip())
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="loms-bench-"))
    env = configure_environment(tmp)

    import django

    django.setup()
    import logging

    bench_log = open(tmp / "bench.log", "a")  # noqa: SIM115 - lives as long as the run
    for handler in logging.getLogger().handlers + logging.getLogger("django").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(bench_log)  # this process's own log lines (W2 closes) go to a file
    from bench.seed import seed_closed_positions

    started = datetime.now(UTC)
    results: dict = {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "database": env["DATABASE_URL"].split(":", 1)[0],
        "args": vars(args),
        "reads": {},
    }
    print(
        f"LOMS benchmark {results['date']} on {results['machine']['nproc']} x {results['machine']['cpu_model']}, "
        f"{results['machine']['ram_gb']} GB, load {results['machine']['load_average']}, db {results['database']}"
    )
    auth = prepare_database()
    db_close()
    server = None
    try:
        if workloads & {"w1", "w3", "w4", "w5"}:
            server = Server(env, tmp / "server.log")
            results["gunicorn"] = {
                "workers": env.get("GUNICORN_WORKERS", f"cpu+1={os.cpu_count() + 1}"),
                "threads": env.get("GUNICORN_THREADS", "4"),
            }
        if "w1" in workloads:
            results["w1"] = w1_ingest(server, auth, signals=args.signals, levels=levels)
        if workloads & {"w3", "w4", "w5"}:
            for size in sizes:
                missing = size - position_count()
                if missing > 0:
                    began = time.perf_counter()
                    seed_closed_positions(missing)
                    print(f"  seeded {missing} positions in {time.perf_counter() - began:.1f} s (total {size})")
                db_close()
                results["reads"][str(size)] = read_workloads(
                    server, auth, size=size, reads=args.reads, workloads=workloads
                )
    finally:
        if server is not None:
            server.stop()
    if "w2" in workloads:
        results["w2"] = w2_sweep(sweep_sizes)
    if "w6" in workloads:  # issue #11: flatten 20 positions on the stand-in exchange (own process: demo settings)
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "bench_flatten.py"), "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env={k: v for k, v in env.items() if k not in {"DATABASE_URL", "ENVIRONMENT"}},
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith('{"exchange"')]
        results["w6"] = json.loads(lines[-1]) if lines else {"error": done.stderr[-2000:]}
        print(f"  W6 flatten: {results['w6']}")
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = verdicts(results, sizes)
    results["scaling"] = scaling(results, sizes)
    print("Targets:")
    for name, verdict in results["targets"].items():
        print(f"  {'met   ' if verdict['met'] else 'MISSED'} {name}: {verdict['measured']}")
    if results["scaling"]:
        print(f"Scaling ({results['scaling']['rows']} rows), p50 ratio: {results['scaling']['p50_ratio']}")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"{started:%Y-%m-%d_%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"Written {out}")
    if args.keep:
        print(f"Kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
