"""A small HTTP load generator: N threads, each with its own keep-alive `http.client` connection.

Requests are numbered 0..count-1 and handed out from a shared counter, so exactly `count`
requests are sent (or fewer if `time_limit` runs out). Every response is read completely.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

# (method, path, body or None, extra headers)
RequestSpec = tuple[str, str, bytes | None, dict[str, str]]


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of `values` (pct in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class LoadResult:
    concurrency: int
    sent: int = 0
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0  # this process's CPU while sending: the load generator shares the machine's cores
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # transport errors by exception name

    @property
    def non_2xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300) + sum(self.errors.values())

    def summary(self) -> dict:
        lat = self.latencies_ms
        return {
            "concurrency": self.concurrency,
            "requests": self.sent,
            "elapsed_s": round(self.elapsed_s, 3),
            "client_cpu_ms_per_request": round(1000 * self.client_cpu_s / self.sent, 2) if self.sent else None,
            "throughput_rps": round(self.sent / self.elapsed_s, 1) if self.elapsed_s else None,
            "p50_ms": _r(percentile(lat, 50)),
            "p95_ms": _r(percentile(lat, 95)),
            "p99_ms": _r(percentile(lat, 99)),
            "max_ms": _r(max(lat) if lat else None),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "transport_errors": dict(self.errors),
            "non_2xx": self.non_2xx,
        }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def run_load(
    *,
    host: str,
    port: int,
    make_request: Callable[[int], RequestSpec],
    count: int,
    concurrency: int,
    time_limit_s: float = 120.0,
    timeout_s: float = 60.0,
) -> LoadResult:
    """Send `count` requests built by `make_request(i)` with `concurrency` parallel connections."""
    result = LoadResult(concurrency=concurrency)
    counter = itertools.count()
    lock = threading.Lock()
    start_barrier = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
        latencies: list[float] = []
        statuses: Counter = Counter()
        errors: Counter = Counter()
        start_barrier.wait()
        while True:
            index = next(counter)
            if index >= count or time.perf_counter() > deadline[0]:
                break
            method, path, body, headers = make_request(index)
            began = time.perf_counter()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                latencies.append((time.perf_counter() - began) * 1000)
                statuses[response.status] += 1
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
            except (OSError, http.client.HTTPException) as exc:
                errors[type(exc).__name__] += 1
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
        connection.close()
        with lock:
            result.latencies_ms.extend(latencies)
            result.statuses.update(statuses)
            result.errors.update(errors)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    cpu_began = time.process_time()
    began = time.perf_counter()
    deadline[0] = began + time_limit_s
    start_barrier.wait()
    for thread in threads:
        thread.join(time_limit_s + timeout_s + 5)
    result.elapsed_s = time.perf_counter() - began
    result.client_cpu_s = time.process_time() - cpu_began
    result.sent = len(result.latencies_ms) + sum(result.errors.values())
    return result
