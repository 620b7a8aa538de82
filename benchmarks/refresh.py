"""What change notification costs and saves: open, hits, misses, and how
soon another writer's entry is seen, with polling and with the watcher.

A store of --entries small entries (one snapshot, plus a few in the log) is
read by:

- `polling 0`: `refresh_interval=0`: every miss re-reads log/ and snapshots/;
- `polling 0.2`: the default interval without a watcher (a miss re-reads at
  most every 0.2 s), as where the platform cannot watch;
- `inotify`: Linux's default, inotify read on demand (started by a first
  miss; the benchmark waits until it runs);
- `watchdog`: the watchdog observer, the default off Linux (forced here).

Each mode runs in a process of its own. Reported (medians over --repeat
runs or blocks, in microseconds unless noted): open (constructor + first
hit, fresh instance), hit, miss (nothing changed), miss + put (a miss on
a new key, then a put of it: what a `persistent_cache` miss does), and the
latency until another process's new entry is seen by a reader that keeps
missing on it (ms). The ratio column compares with `polling 0.2`.

    .venv/bin/python -m benchmarks.refresh [--entries 10000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import marimo_store._changes
from marimo_store import DefaultCleanupStrategy, Entry, ExecutionKey, FsPersistentStore

MODES = ("polling 0", "polling 0.2", "inotify", "watchdog")
WATCHING = ("inotify", "watchdog")
COLUMNS = ("open", "hit", "miss", "miss_put", "latency")

KEEP_ALL = DefaultCleanupStrategy(max_entries_per_block=None, max_entries_per_module=None)
PUT_ONE = """\
import sys
from marimo_store import Entry, ExecutionKey, FsPersistentStore
store = FsPersistentStore(sys.argv[1], cleanup_on_exit=False)
store.put(Entry.of(ExecutionKey("late", sys.argv[2]), {"v": sys.argv[2]}))
store.close()
"""


def build(path: str, entries: int) -> None:
    store = FsPersistentStore(path, cleanup_on_exit=False)
    for i in range(entries):
        store.put(Entry.of(ExecutionKey(f"b{i % 100}", f"m{i}"), {"i": i}))
    store.close()
    store.cleanup(KEEP_ALL)
    for i in range(10):  # and a few in the log after the snapshot
        store.put(Entry.of(ExecutionKey("log", f"m{i}"), {"i": i}))
    store.close()


def reader(path: str, mode: str) -> FsPersistentStore:
    interval = 0 if mode == "polling 0" else 0.2
    store = FsPersistentStore(path, refresh_interval=interval, cleanup_on_exit=False)
    if mode == "polling 0.2":
        store._live.watch_unavailable = True  # as where the platform cannot watch
    assert store.get(ExecutionKey("none", "none")) is None  # a miss: the watch starts
    if mode in WATCHING:
        deadline = time.monotonic() + 30
        while store._live.watch is None:
            assert time.monotonic() < deadline, "the watcher did not start"
            time.sleep(0.001)
    return store


def per_call(function: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls * 1e6


def latency_ms(path: str, store: FsPersistentStore, tag: str) -> float:
    """From the moment another process's put returned until a get finds it."""
    subprocess.run([sys.executable, "-c", PUT_ONE, path, tag], check=True)
    done = time.perf_counter()
    key = ExecutionKey("late", tag)
    while store.get(key) is None:
        pass
    return (time.perf_counter() - done) * 1e3


def measure(path: str, mode: str, repeat: int) -> dict[str, float]:
    """One mode, in a process of its own (no other mode's threads around)."""
    marimo_store._changes.USE_INOTIFY = mode == "inotify"
    interval = 0 if mode == "polling 0" else 0.2
    results: dict[str, list[float]] = {name: [] for name in COLUMNS}
    fresh_keys = (ExecutionKey("new", f"k{i}") for i in itertools.count())

    def miss_then_put() -> None:
        key = next(fresh_keys)
        assert store.get(key) is None
        store.put(Entry.of(key, {"v": key.module_hash}))

    for _ in range(repeat):  # before any watcher exists in this process
        started = time.perf_counter()
        fresh = FsPersistentStore(path, refresh_interval=interval, cleanup_on_exit=False)
        assert fresh.get(ExecutionKey("b7", "m7")) is not None
        results["open"].append((time.perf_counter() - started) * 1e6)
    store = reader(path, mode)
    assert store.get(ExecutionKey("b1", "m1")) is not None
    for block in range(repeat):
        results["hit"].append(per_call(lambda: store.get(ExecutionKey("b1", "m1")), 2000))
        time.sleep(0.05)  # the events of the last put have arrived
        results["miss"].append(per_call(lambda: store.get(ExecutionKey("no", "pe")), 2000))
        results["latency"].append(latency_ms(path, store, f"{mode}-{block}"))
        results["miss_put"].append(per_call(miss_then_put, 500))
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # a child: measure one mode
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.path, args.mode, args.repeat)))
        return
    rows = {}
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "store")
        build(path, args.entries)
        modes = MODES if sys.platform.startswith("linux") else tuple(set(MODES) - {"inotify"})
        for number, mode in enumerate(modes):
            # Each on a copy of its own: readers leave access records behind.
            copy = os.path.join(directory, f"copy-{number}")
            shutil.copytree(path, copy)
            command = [sys.executable, __file__, "--mode", mode, "--path", copy]
            child = subprocess.run(
                [*command, "--repeat", str(args.repeat)],
                check=True,
                capture_output=True,
                text=True,
            )
            rows[mode] = json.loads(child.stdout)
    base = rows["polling 0.2"]
    print(f"{args.entries} entries, medians of {args.repeat} runs or blocks")
    print(
        f"{'':12} {'open µs':>10} {'hit µs':>10} {'miss µs':>10} {'miss+put µs':>12} "
        f"{'seen after ms':>14} ratio"
    )
    for mode, row in rows.items():
        ratios = "/".join(f"{row[k] / base[k]:.2f}" for k in COLUMNS)
        print(
            f"{mode:12} {row['open']:10.1f} {row['hit']:10.2f} {row['miss']:10.2f} "
            f"{row['miss_put']:12.2f} {row['latency']:14.2f} {ratios}"
        )


if __name__ == "__main__":
    main()
