"""`single_flight=True`: concurrent processes compute a key once; a killed or
hung computing process delays the others by at most the lease. 16
processes on 20 keys compute each key once (`--flight-runs N` repeats it).

Real processes (see `workers/flight.py`): the test decides when the one
computing finishes, and kills (`SIGKILL`) or stops (`SIGSTOP`) it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import workers

TIMEOUT = 60.0


class Flight:
    """Worker processes sharing one store and one gate directory."""

    def __init__(self, root: Path, lease: float) -> None:
        self.gate = root / "gate"
        self.gate.mkdir()
        self.store = root / "store"
        self.lease = lease
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        for _ in range(count):
            self.processes.append(
                subprocess.Popen(
                    workers.script("flight", str(self.store), str(self.gate), str(self.lease)),
                    env=workers.environment(),
                )
            )
        (self.gate / "go").touch()

    def computing(self, count: int) -> list[int]:
        """Wait until `count` processes have started computing; their pids."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            pids = sorted(int(p.name.split("-")[1]) for p in self.gate.glob("started-*"))
            if len(pids) >= count:
                return pids
            assert time.monotonic() < deadline, f"only {pids} started computing"
            failed = [p.returncode for p in self.processes if p.poll() not in (None, 0)]
            assert set(failed) <= {-signal.SIGKILL}, f"a worker failed: {failed}"  # ours only
            time.sleep(0.01)

    def finish(self) -> dict[int, str]:
        """Let computations end; wait for the workers; their results by pid."""
        (self.gate / "open").touch()
        for process in self.processes:
            process.wait(TIMEOUT)
        return {int(p.name.split("-")[1]): p.read_text() for p in self.gate.glob("result-*")}

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def flight(tmp_path: Path) -> Iterator[type[Flight]]:
    made: list[Flight] = []

    def make(lease: float) -> Flight:
        made.append(Flight(tmp_path, lease))
        return made[-1]

    yield make  # type: ignore[misc]
    for one in made:
        one.stop_all()


def test_four_processes_compute_one_key_once(flight: type[Flight]) -> None:
    run = flight(lease=60)
    run.start(4)
    run.computing(1)
    time.sleep(1.0)  # the other three are waiting now (or arrive later and hit)
    results = run.finish()
    assert [p.returncode for p in run.processes] == [0, 0, 0, 0]
    assert len(run.computing(1)) == 1  # nobody else computed
    assert sorted(results.values()) == ["49"] * 4


def test_a_killed_computing_process_is_taken_over_within_the_lease(
    flight: type[Flight],
) -> None:
    lease = 60.0
    run = flight(lease=lease)
    run.start(3)
    [holder] = run.computing(1)
    time.sleep(0.5)  # the other two wait for the lease
    os.kill(holder, signal.SIGKILL)
    killed_at = time.monotonic()
    pids = run.computing(2)
    takeover = time.monotonic() - killed_at
    assert takeover < 10.0 < lease, f"took {takeover:.2f} s to take over"
    results = run.finish()
    assert sorted(p.returncode for p in run.processes) == [-signal.SIGKILL, 0, 0]
    assert len(pids) == len(run.computing(2)) == 2  # the third waited for the second
    assert holder not in results
    assert sorted(results.values()) == ["49", "49"]


def test_a_hung_computing_process_delays_the_others_by_the_lease_only(
    flight: type[Flight],
) -> None:
    lease = 1.5
    run = flight(lease=lease)
    run.start(2)
    started = time.monotonic()
    [holder] = run.computing(1)
    os.kill(holder, signal.SIGSTOP)  # hangs holding its lease
    try:
        run.computing(2)
        waited = time.monotonic() - started
    finally:
        os.kill(holder, signal.SIGKILL)
    assert lease * 0.5 < waited < lease + 10.0, f"waited {waited:.2f} s"
    results = run.finish()
    assert list(results.values()) == ["49"]


PROCESSES, KEYS = 16, 20


def many_keys(run_dir: Path, seed: int, kill: bool) -> tuple[dict[int, list[int]], set[int]]:
    """16 processes call a slow cached function on 20 keys (each in its own
    order); with `kill`, random ones are SIGKILLed meanwhile. Which pids
    started computing each key (in order), and which pids were killed."""
    run_dir.mkdir()
    store = run_dir / "store"
    processes = [
        subprocess.Popen(
            workers.script("flight", "many", str(store), str(run_dir), str(KEYS), str(i)),
            env=workers.environment(),
        )
        for i in range(PROCESSES)
    ]
    (run_dir / "go").touch()
    killed: set[int] = set()
    rng = random.Random(seed)
    if kill:
        for victim in rng.sample(processes, 4):
            time.sleep(rng.uniform(0.05, 0.4))
            victim.kill()
            killed.add(victim.pid)
    for process in processes:
        process.wait(TIMEOUT)
    survivors = [p.returncode for p in processes if p.pid not in killed]
    assert survivors == [0] * len(survivors), survivors
    runs: dict[int, list[tuple[int, int]]] = {}
    for marker in run_dir.glob("ran-*"):
        _, key, pid, at = marker.name.split("-")
        runs.setdefault(int(key), []).append((int(at), int(pid)))
    return {key: [pid for _, pid in sorted(found)] for key, found in runs.items()}, killed


@pytest.mark.parametrize("kill", [False, True], ids=["no kills", "random SIGKILLs"])
def test_sixteen_processes_compute_each_of_twenty_keys_once(
    tmp_path: Path, request: pytest.FixtureRequest, kill: bool
) -> None:
    """A caller that takes the lease always looks the key up again first: one
    computation per key, and a second one only after the first computing
    process was killed."""
    duplicates = 0
    for run in range(request.config.getoption("--flight-runs")):
        runs, killed = many_keys(tmp_path / f"run{run}", run, kill)
        assert set(runs) == set(range(KEYS)), sorted(runs)
        for key, pids in runs.items():
            duplicates += len(pids) - 1
            # Every computation but the last was by a process that was killed.
            assert set(pids[:-1]) <= killed, (key, pids, killed)
    print(f"single_flight, {'with' if kill else 'without'} kills: {duplicates} duplicates")
