#!/usr/bin/env python
"""Server CPU per signal in-process (Django test client, fresh SQLite database), for one checkout:

    .venv/bin/python bench/cpu_per_signal.py [CHECKOUT]     # default: this one

Prints the best of 5 batches of 200 signals after 100 warm-up signals. Run it for two checkouts
one after the other to compare them (docs/PERFORMANCE.md, "Ingest under concurrency").
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent).resolve()
    sys.path.insert(0, str(root))
    os.chdir(root)
    work = Path(tempfile.mkdtemp(prefix="loms-cpu-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="lomsite.settings",
        LOMS_ENV_FILE="/nonexistent",
        DATABASE_URL=f"sqlite:///{work / 'loms.sqlite3'}",
        AUDIT_LOG_PATH=str(work / "audit.jsonl"),
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    logging.disable(logging.CRITICAL)
    client = Client()

    def signal(number: int) -> None:
        body = {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "price": 100.0,
            "timestamp": "2025-06-19T10:00:00Z",
            "exchange": "bitget",
            "timeframe_min": 5,
            "strategy": "s",
            "tp_pct": 4.5,
            "sl_pct": 1.5,
            "signal_id": f"cpu-{number}",
        }
        answer = client.post("/signals/bounce", json.dumps(body), content_type="application/json")
        assert answer.status_code == 200, answer.content

    for number in range(100):
        signal(number)
    best = float("inf")
    for batch in range(5):
        started = time.process_time()
        for number in range(200):
            signal(1000 * (batch + 1) + number)
        best = min(best, (time.process_time() - started) * 1000 / 200)
    print(f"{root}: {best:.2f} ms CPU per signal (best of 5 batches of 200)")


if __name__ == "__main__":
    main()
