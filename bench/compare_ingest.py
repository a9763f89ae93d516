#!/usr/bin/env python
"""W1 ingest of two checkouts measured beside each other: old, new, old, new, ... in one run.

    .venv/bin/python bench/compare_ingest.py --old /work/wt/oldmain --rounds 2 --signals 800
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python bench/compare_ingest.py \
        --old /work/wt/oldmain --postgres   # databases loms_bench_<tag>_old / _new (dropped, recreated)
    ... --prices simulator                         # the real mix: the sweep closes positions meanwhile

Each phase runs the checkout's own `bench/run.py --workloads w1` (its own code, migrations, server,
gunicorn settings) in a subprocess with the same venv, so both are measured the same way on the same
machine within minutes of each other. The machine is shared, so absolute figures drift: compare the
ratios. Prints every phase, the medians per checkout, and:
- scaling: throughput at c=16 / throughput at c=1 (target >= 1.6);
- tail: p99 at c=16 / p50 at c=1 (target <= 10);
- CPU: new server CPU per signal / old (target <= 0.5);
and writes bench/results/compare-<date>.json.

`--prices simulator` quotes random prices (+-10 %) instead of the fixed 100, so the cluster's sweep
closes W1's positions (TP 104.5 / SL 98.5) every second while signals arrive.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs `bench/run.py` of the checkout given as first argument, optionally with simulator prices.
WRAPPER = r"""
import os, sys
root, prices, *argv = sys.argv[1:]
sys.path.insert(0, root)
os.chdir(root)
import bench.run as run
original = run.configure_environment
def configure(tmp):
    env = original(tmp)
    if prices == "simulator":
        env.update(PRICE_SOURCE="simulator")
        env.pop("PRICE_EXCHANGE", None)
        os.environ.clear()
        os.environ.update(env)
    return env
run.configure_environment = configure
sys.exit(run.main(argv))
"""

sys.path.insert(0, str(ROOT))
from bench.run import W1_FIGURES as KEYS  # noqa: E402  (a checkout whose bench predates a figure gives None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="the other checkout (e.g. /work/wt/oldmain)")
    parser.add_argument("--new", default=str(ROOT), help="this checkout (default)")
    parser.add_argument("--rounds", type=int, default=2, help="old/new pairs")
    parser.add_argument("--signals", type=int, default=800, help="signals per W1 phase")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--prices", choices=("fixed", "simulator"), default="fixed")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="PostgreSQL at DATABASE_URL's server, databases loms_bench_<tag>_old/_new",
    )
    parser.add_argument("--tag", default="perf", help="part of the PostgreSQL database names")
    parser.add_argument("--only", choices=("old", "new"), help="measure one checkout only")
    return parser.parse_args(argv)


def fresh_database(url: str) -> None:
    """Drop and create the phase's PostgreSQL database: bench/run.py flushes a database it reuses,
    which also drops the groups its migrations created (the second run would find no "bot" group)."""
    import psycopg

    base, name = url.rsplit("/", 1)
    if "bench" not in name:
        raise SystemExit(f"{name}: the benchmark drops its databases; use a name that contains 'bench'")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def run_phase(label: str, root: str, args: argparse.Namespace, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    if args.postgres:
        server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/x").rsplit("/", 1)[0]
        env["DATABASE_URL"] = f"{server}/loms_bench_{args.tag}_{label}"
        fresh_database(env["DATABASE_URL"])
    else:
        env.pop("DATABASE_URL", None)
    command = [
        sys.executable,
        "-c",
        WRAPPER,
        root,
        args.prices,
        "--workloads",
        "w1",
        "--signals",
        str(args.signals),
        "--concurrency",
        args.concurrency,
        "--out",
        str(out),
    ]
    completed = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    if completed.returncode != 0:
        raise SystemExit(f"{label} ({root}) failed:\n{completed.stdout}\n{completed.stderr}")
    return json.loads(out.read_text())


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    levels = [f"c{c.strip()}" for c in args.concurrency.split(",") if c.strip()]
    started = datetime.now(UTC)
    checkouts = [("old", args.old), ("new", args.new)]
    if args.only:
        checkouts = [c for c in checkouts if c[0] == args.only]
    print(
        f"compare_ingest {started:%Y-%m-%d %H:%M} UTC, load {[round(x, 2) for x in os.getloadavg()]}, "
        f"{'postgresql' if args.postgres else 'sqlite'}, prices {args.prices}, {args.signals} signals a phase"
    )
    phases: dict[str, list[dict]] = {label: [] for label, _ in checkouts}
    with tempfile.TemporaryDirectory(prefix="loms-compare-") as tmp:
        for round_no in range(args.rounds):
            for label, root in checkouts:
                result = run_phase(label, root, args, Path(tmp) / f"{label}-{round_no}.json")
                w1 = result["w1"]
                phases[label].append({"load": result["machine"]["load_average"], **{lv: w1[lv] for lv in levels}})
                figures = "; ".join(f"{lv} " + ", ".join(f"{k}={w1[lv].get(k)}" for k in KEYS) for lv in levels)
                if "floor" in w1:  # checkouts whose bench measures the 401 floor (bench/run.py w1_floor)
                    phases[label][-1]["floor"] = w1["floor"]
                    figures += f"; floor (401) server_cpu_ms_per_request={w1['floor']['server_cpu_ms_per_request']}"
                print(f"  round {round_no + 1} {label}: {figures}", flush=True)
    summary: dict = {}
    for label, runs in phases.items():
        summary[label] = {lv: {k: median([run[lv].get(k) for run in runs]) for k in KEYS} for lv in levels}
        med = summary[label]
        if "c1" in med and "c16" in med:
            med["scaling_c16_over_c1"] = round(med["c16"]["throughput_rps"] / med["c1"]["throughput_rps"], 2)
            med["tail_p99_c16_over_p50_c1"] = round(med["c16"]["p99_ms"] / med["c1"]["p50_ms"], 2)
        med["errors"] = sum(run[lv]["non_2xx"] for run in runs for lv in levels)
        print(f"median {label}: " + json.dumps(med))
    if "old" in summary and "new" in summary:
        summary["new_over_old"] = {
            f"{lv} {k}": round(summary["new"][lv][k] / summary["old"][lv][k], 2)
            for lv in levels
            for k in ("throughput_rps", "p50_ms", "p99_ms", "server_cpu_ms_per_signal")
            if summary["old"][lv][k]
        }
        print("new / old: " + json.dumps(summary["new_over_old"]))
    record = {
        "date": started.isoformat(timespec="seconds"),
        "args": vars(args),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "phases": phases,
        "summary": summary,
    }
    out = ROOT / "bench" / "results" / f"compare-{started:%Y-%m-%d_%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"Written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
