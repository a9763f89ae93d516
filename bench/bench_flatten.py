"""Flatten timing (issue #11): 20 open positions on a loopback stand-in exchange in demo mode,
then `flatten()` (switch off, cancel all, 20 reduce-only closes, read back). Prints seconds.

    .venv/bin/python bench/bench_flatten.py [--positions 20] [--exchange bitget|bybit] [--latency-ms 50]

The stand-in (tests/exchange_standin.py) checks every signature; `--latency-ms` adds a delay to
each answer to stand for the network round trip to the exchange. Target: flat in under 60 s
(the runbook's "everything off in 60 seconds"). `measure_flatten()` is used by bench/run.py (W6).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SEC = 60.0


def measure_flatten(*, positions: int = 20, exchange: str = "bitget", latency_ms: float = 50.0) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.exchange_standin import Market, StandIn

    standin = StandIn(exchange, equity=Decimal("1000000"))
    standin.markets = {
        f"S{i:02d}USDT": Market(f"S{i:02d}USDT", Decimal("10"), Decimal("1"), Decimal("1"), Decimal("0.001"))
        for i in range(positions)
    }
    standin.start()
    tmp = Path(tempfile.mkdtemp(prefix="loms-bench-flatten-"))
    os.environ.update(
        LOMS_ENV_FILE="/nonexistent",
        DJANGO_SETTINGS_MODULE="lomsite.settings",
        ENVIRONMENT="paper",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}",
        AUDIT_LOG_PATH=str(tmp / "audit.jsonl"),
        BROKER_MODE="demo",
        BROKER_EXCHANGE=exchange,
        BITGET_BASE_URL=standin.url,
        BYBIT_BASE_URL=standin.url,
        BITGET_API_KEY=standin.api_key,
        BITGET_API_SECRET=standin.api_secret,
        BITGET_API_PASSPHRASE=standin.passphrase,
        BYBIT_API_KEY=standin.api_key,
        BYBIT_API_SECRET=standin.api_secret,
        SYMBOL_ALLOWLIST=",".join(standin.markets),
        LIVE_MAX_NOTIONAL_USDT="100",
        MAX_SIGNAL_AGE_SEC="",
        MAX_SIGNAL_PRICE_DEVIATION_PCT="",
        LOG_LEVEL="WARNING",
        BACKUP_SCHEDULE_ENABLED="false",
    )
    import django

    django.setup()
    from django.core.management import call_command

    from oms.models import Position
    from oms.services.execution import flatten
    from oms.services.signals import signal_ingest

    call_command("migrate", verbosity=0)
    for i, symbol in enumerate(standin.markets):
        answer = signal_ingest(
            payload={
                "symbol": symbol,
                "side": "BUY" if i % 2 else "SELL",
                "price": 10,
                "qty": 5,
                "timestamp": datetime.now(UTC).isoformat(),
            }
        ).body
        assert answer["risk_ok"], answer
    assert Position.objects.open().count() == positions == len(standin.positions)
    standin.delay_sec = latency_ms / 1000
    requests_before = len(standin.requests)
    started = time.perf_counter()
    result = flatten(actor="bench", reason="bench")
    seconds = time.perf_counter() - started
    standin.stop()
    return {
        "exchange": exchange,
        "positions": positions,
        "latency_ms": latency_ms,
        "seconds": round(seconds, 2),
        "flat": result.flat,
        "requests": len(standin.requests) - requests_before,
        "target_sec": TARGET_SEC,
        "ok": result.flat and seconds <= TARGET_SEC,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, default=20)
    parser.add_argument("--exchange", choices=("bitget", "bybit"), default="bitget")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    figures = measure_flatten(positions=args.positions, exchange=args.exchange, latency_ms=args.latency_ms)
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"flatten {figures['positions']} positions on {figures['exchange']} (stand-in, "
            f"{figures['latency_ms']:.0f} ms per answer): {figures['seconds']} s, {figures['requests']} requests, "
            f"flat={figures['flat']} (target <= {TARGET_SEC:.0f} s: {'OK' if figures['ok'] else 'MISSED'})"
        )
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
