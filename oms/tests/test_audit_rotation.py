"""The audit JSONL rotates daily or by size, compressed, and never loses a line written meanwhile."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from oms.services.audit import audit_append, audit_rotate, audit_rotated_files


def all_lines(live: Path) -> list[dict]:
    lines = []
    for _, rotated in audit_rotated_files(live):
        opener = gzip.open if rotated.suffix == ".gz" else open
        with opener(rotated, "rt", encoding="utf-8") as handle:
            lines += [json.loads(line) for line in handle]
    if live.exists():
        lines += [json.loads(line) for line in live.read_text().splitlines()]
    return lines


def test_no_line_is_lost_while_threads_write_and_the_file_rotates(settings):
    settings.AUDIT_MAX_BYTES = 0
    live = Path(settings.AUDIT_LOG_PATH)
    writers, per_writer = 6, 400
    done = threading.Event()
    rotations = []

    def write(worker: int) -> None:
        for n in range(per_writer):
            audit_append({"worker": worker, "n": n})

    def rotate() -> None:
        while not done.is_set():
            if (rotated := audit_rotate(path=live, force=True)) is not None:
                rotations.append(rotated)
            time.sleep(0.005)

    rotator = threading.Thread(target=rotate)
    rotator.start()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    rotator.join()

    assert len(rotations) >= 3  # the rotation really ran in the middle of the writing
    assert all(path.suffix == ".gz" and path.exists() for path in rotations)
    lines = all_lines(live)
    assert len(lines) == writers * per_writer
    expected = {(w, n) for w in range(writers) for n in range(per_writer)}
    assert {(line["worker"], line["n"]) for line in lines} == expected


def test_the_file_rotates_when_it_reaches_the_size_limit(settings):
    settings.AUDIT_MAX_BYTES = 2_000
    live = Path(settings.AUDIT_LOG_PATH)
    for n in range(100):
        audit_append({"n": n, "padding": "x" * 50})
    rotated = audit_rotated_files(live)
    assert len(rotated) >= 3
    assert all(path.suffix == ".gz" for _, path in rotated)
    assert live.stat().st_size < 2_000 + 200
    assert [line["n"] for line in all_lines(live)] == list(range(100))


def test_the_first_write_of_a_new_day_rotates_yesterdays_file(settings):
    settings.AUDIT_MAX_BYTES = 0
    live = Path(settings.AUDIT_LOG_PATH)
    audit_append({"day": "yesterday"})
    yesterday = (timezone.now() - timedelta(days=1)).timestamp()
    os.utime(live, (yesterday, yesterday))
    audit_append({"day": "today"})
    rotated = audit_rotated_files(live)
    assert len(rotated) == 1
    with gzip.open(rotated[0][1], "rt") as handle:
        assert json.loads(handle.read())["day"] == "yesterday"
    assert json.loads(live.read_text())["day"] == "today"


def test_nothing_rotates_when_daily_rotation_is_off_and_no_size_limit(settings):
    settings.AUDIT_MAX_BYTES = 0
    settings.AUDIT_ROTATE_DAILY = False
    live = Path(settings.AUDIT_LOG_PATH)
    audit_append({"n": 1})
    old = (timezone.now() - timedelta(days=3)).timestamp()
    os.utime(live, (old, old))
    audit_append({"n": 2})
    assert audit_rotated_files(live) == []
    assert audit_rotate(path=live) is None
