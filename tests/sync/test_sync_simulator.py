"""The adversarial sync simulator (see _simulation.py and _replicator.py).

`--schedules N` (default 300, or MARIMO_STORE_SYNC_SCHEDULES) seeded
schedules with 3 replicas whose stores live in this process, and
`--process-schedules N` (default 10) with each replica's store in a worker
process that is exited or SIGKILLed at random. `--schedule-seed S` starts
at another seed. A failure names its seed and the last steps; rerun that
seed alone with `--schedules 1 --schedule-seed <seed>`.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import pytest
from _simulation import ProcessReplica, Schedule


def run_schedules(
    tmp_path: Path, first_seed: int, count: int, replica: object = None
) -> Counter[str]:
    totals: Counter[str] = Counter()
    started = time.monotonic()
    for seed in range(first_seed, first_seed + count):
        workdir = tmp_path / f"schedule-{seed}"
        totals.update(Schedule(seed, workdir, make_replica=replica).run())
        shutil.rmtree(workdir, ignore_errors=True)  # absent if nothing was ever written
        totals["schedules"] += 1
    print(f"{count} schedules in {time.monotonic() - started:.1f} s: {dict(totals)}")
    return totals


def test_sync_schedules(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    count = request.config.getoption("--schedules")
    totals = run_schedules(tmp_path, request.config.getoption("--schedule-seed"), count)
    assert totals["schedules"] == count
    if count >= 100:  # the schedules exercised what they are for
        for what in (
            "hits",
            "conflicts",
            "partial",
            "stale",
            "resurrected",
            "deletes",
            "clashes",
            "log first",
            "unreadable",
            "gc",
        ):
            assert totals[what] > 0, (what, dict(totals))
    assert totals["lost puts"] == 0  # (each schedule asserts it too)


def test_sync_schedules_with_worker_processes(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    count = request.config.getoption("--process-schedules")
    first = request.config.getoption("--schedule-seed") + 1_000_000
    totals = run_schedules(tmp_path, first, count, ProcessReplica)
    assert totals["schedules"] == count
    assert totals["opens"] > 0
    assert totals["lost puts"] == 0
