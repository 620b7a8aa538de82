"""Costs of `persistent_cache` against joblib.Memory and diskcache's memoize.

The same functions are cached by the three libraries in one run, and the
table shows medians over --repeat rounds (ratio = the library / the
reference named in the row; lower is better):

1. Tiny hit: `add(a, b) -> a + b` called with `(1, 2)` after one miss; the
   time per call of a hit (each round times a batch of calls lasting about
   --batch-seconds and divides). Reference: marimo_store. The floor: what
   is left of marimo_store's hit once the call's key is known, `get` of
   that key from a store instance on the same directory and the result
   read out of the entry (the target: a hit within 1.3x of it).
2. Large argument hit: `first(x) -> float(x[0])` with a float64 array of
   each size in --sizes-mib (random, made once); the time of one hit, as a
   ratio to one xxh3-128 pass over the array timed in the same round (the
   least any cache keyed on the array's contents must do). diskcache's
   memoize pickles the arguments into its SQLite key: past SQLite's blob
   limit (about 1 GB) it raises, and the table says so.
3. Equal results: `constant(i) -> np.ones(10 MiB)` for 100 different `i`;
   the disk used by the cache directory afterwards (apparent bytes of its
   files, and allocated bytes as `du` counts them), as a ratio to one copy
   of the result (10 MiB).

4. Hits from several processes: `square(i)` for --keys values of `i`,
   stored first by this process; then --processes new processes each call
   it for `i` in turn (every call a hit) for --seconds, all starting at one
   instant; the hits per second of all of them together, marimo_store and
   diskcache memoize in turn (joblib.Memory is left out: a hit reads files
   of its own). Reference: diskcache (the issue's target: at least its
   throughput).

Every round runs the libraries in turn, in an order that alternates, so
whatever the first one pays (page faults, CPU frequency) is shared.

    .venv/bin/python -m benchmarks.cache [--sizes-mib 1024,256] [--repeat 5] [--dir DIR]
        [--processes 4] [--keys 1000] [--seconds 2]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xxhash
from diskcache import Cache
from joblib import Memory

from benchmarks._common import (
    REPO,
    alternating,
    bytes_text,
    disk_usage,
    machine_info,
    micros_text,
    positive,
    progress,
    ratio_text,
    scratch_arguments,
    scratch_directory,
    seconds_per_call,
    seconds_text,
)
from marimo_store import FsPersistentStore, persistent_cache

Wrap = Callable[[Callable[..., Any]], Callable[..., Any]]
LIBRARIES = ("marimo_store", "joblib.Memory", "diskcache memoize")
RESULT_BYTES = 10 * 1024 * 1024
EQUAL_RESULT_CALLS = 100
PARALLEL = ("marimo_store", "diskcache memoize")
START_DELAY = 3.0
"""Seconds from spawning the hitting processes to their common start (their imports)."""
HIT_WORKER = "import sys; from benchmarks.cache import hit_worker; hit_worker(*sys.argv[1:])"


def add(a: int, b: int) -> int:
    return a + b


def first(x: np.ndarray[Any, Any]) -> float:
    return float(x[0])


def constant(i: int) -> np.ndarray[Any, Any]:
    return np.ones(RESULT_BYTES // 8)


def square(i: int) -> int:
    return i * i


def wrappers(root: str) -> dict[str, tuple[str, Wrap]]:
    """Each library's cache directory under `root`, and how it caches a function there."""
    ours, joblib, diskcache = (os.path.join(root, name) for name in ("ms", "joblib", "dc"))
    return {
        "marimo_store": (
            ours,
            persistent_cache(store=FsPersistentStore(ours, cleanup_on_exit=False)),
        ),
        "joblib.Memory": (joblib, lambda f: Memory(joblib, verbose=0).cache(f)),
        "diskcache memoize": (diskcache, Cache(diskcache).memoize()),
    }


def tiny_hits(root: str, repeat: int, batch_seconds: float) -> dict[str, list[float]]:
    """Seconds per hit of `add(1, 2)`, one value per round, for each library
    and for the floor (see `stored_result`)."""
    libraries = wrappers(os.path.join(root, "tiny"))
    cached = {name: wrap(add) for name, (_, wrap) in libraries.items()}
    calls: dict[str, Callable[[], object]] = {
        name: functools.partial(cached[name], 1, 2) for name in LIBRARIES
    }
    assert calls["marimo_store"]() == 3  # the miss that stores the one entry
    calls["floor"] = stored_result(libraries["marimo_store"][0])
    return seconds_per_call(calls, repeat, batch_seconds)


def stored_result(directory: str) -> Callable[[], object]:
    """The floor of a hit: `get` of the key of the only entry in the store
    at `directory`, and its result read out, by a store instance of its own."""
    store = FsPersistentStore(directory, cleanup_on_exit=False)
    (metadata,) = store.entries()
    key = metadata.key

    def get() -> object:
        entry = store.get(key)
        assert entry is not None
        return entry.variables["return"]

    return get


def large_hits(root: str, size_mib: int, repeat: int) -> tuple[list[float], dict[str, Any]]:
    """xxh3 seconds per round, and for each library its hit seconds per
    round (or the error its first call raised)."""
    progress(f"large argument: making a {size_mib} MiB array")
    array = np.random.default_rng(0).random(size_mib * 1024 * 1024 // 8)
    directory = os.path.join(root, f"large-{size_mib}")
    results: dict[str, Any] = {}
    cached: dict[str, Callable[..., Any]] = {}
    for name, (_, wrap) in wrappers(directory).items():
        progress(f"large argument: first call (miss) with {name}")
        function = wrap(first)
        try:
            assert function(array) == array[0]
        except Exception as error:  # a peer that cannot cache this call
            results[name] = f"fails: {type(error).__name__}: {error}"
            continue
        cached[name] = function
        results[name] = []
    hashing: list[float] = []
    for rep in range(repeat):
        progress(f"large argument: round {rep + 1}/{repeat}")
        start = time.perf_counter()
        xxhash.xxh3_128_digest(array)
        hashing.append(time.perf_counter() - start)
        for name in alternating(LIBRARIES, rep):
            if name in cached:
                start = time.perf_counter()
                assert cached[name](array) == array[0]
                results[name].append(time.perf_counter() - start)
    return hashing, results


def equal_results(root: str) -> dict[str, tuple[int, int]]:
    """(apparent, allocated) bytes of each cache after 100 calls returning one array."""
    usage: dict[str, tuple[int, int]] = {}
    for name, (directory, wrap) in wrappers(os.path.join(root, "equal")).items():
        progress(f"equal results: {EQUAL_RESULT_CALLS} calls with {name}")
        function = wrap(constant)
        for i in range(EQUAL_RESULT_CALLS):
            function(i)
        apparent, allocated, _ = disk_usage(directory)
        usage[name] = (apparent, allocated)
    return usage


def hit_worker(library: str, root: str, keys: str, seconds: str, start_at: str) -> None:
    """In a hitting process: call `square(i)` for `i` in turn from `start_at`
    (a `time.time()`) for `seconds`; print how many calls returned."""
    function = wrappers(root)[library][1](square)
    count = int(keys)
    for i in range(count):  # the hits this process pays once (imports, opening): untimed
        assert function(i) == i * i
    time.sleep(max(0.0, float(start_at) - time.time()))
    deadline = time.perf_counter() + float(seconds)
    calls = 0
    while time.perf_counter() < deadline:
        function(calls % count)
        calls += 1
    print(calls)


def parallel_hits(
    root: str, repeat: int, processes: int, keys: int, seconds: float
) -> dict[str, list[float]]:
    """Hits per second of `processes` processes together, one value per round."""
    directory = os.path.join(root, "parallel")
    libraries = wrappers(directory)
    for name in PARALLEL:
        progress(f"parallel hits: storing {keys} results with {name}")
        function = libraries[name][1](square)
        for i in range(keys):
            function(i)
    rates: dict[str, list[float]] = {name: [] for name in PARALLEL}
    for rep in range(repeat):
        for name in alternating(PARALLEL, rep):
            progress(f"parallel hits: round {rep + 1}/{repeat}, {processes} processes of {name}")
            start_at = str(time.time() + START_DELAY)
            arguments = [name, directory, str(keys), str(seconds), start_at]
            workers = [
                subprocess.Popen(
                    [sys.executable, "-c", HIT_WORKER, *arguments],
                    cwd=REPO,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(processes)
            ]
            counts = [int(worker.communicate()[0]) for worker in workers]
            if any(worker.returncode for worker in workers):
                raise SystemExit(f"a hitting process of {name} failed")
            rates[name].append(sum(counts) / seconds)
    return rates


def report(
    args: argparse.Namespace,
    root: str,
    tiny: dict[str, list[float]],
    large: dict[int, tuple[list[float], dict[str, Any]]],
    equal: dict[str, tuple[int, int]],
    *,
    parallel: dict[str, list[float]],
) -> None:
    print("# persistent_cache benchmark: marimo_store vs joblib.Memory and diskcache memoize\n")
    print("\n".join(machine_info(root)))
    sizes = ",".join(str(size) for size in args.sizes_mib)
    print(
        f"- `python -m benchmarks.cache --sizes-mib {sizes} --repeat {args.repeat}`; medians over "
        f"{args.repeat} rounds, (min .. max) in brackets; lower is better"
    )
    print()
    print("| workload | library | median | ratio | reference |")
    print("|---|---|---:|---:|---|")
    ours = statistics.median(tiny["marimo_store"])
    for name in (*LIBRARIES, "floor"):
        values = tiny[name]
        spread = f"({micros_text(min(values))} .. {micros_text(max(values))})"
        print(
            f"| tiny hit, per call | {name} | {micros_text(statistics.median(values))} {spread} "
            f"| {ratio_text(statistics.median(values), ours)} | marimo_store |"
        )
    for size, (hashing, results) in large.items():
        xxh3 = statistics.median(hashing)
        print(
            f"| {size} MiB argument, hit | one xxh3-128 pass | {seconds_text(xxh3)} "
            f"({size / 1024 / xxh3:.1f} GiB/s) | 1.00x | xxh3 |"
        )
        for name in LIBRARIES:
            outcome = results[name]
            if isinstance(outcome, str):
                print(f"| {size} MiB argument, hit | {name} | {outcome} | | |")
                continue
            median = statistics.median(outcome)
            spread = f"({seconds_text(min(outcome))} .. {seconds_text(max(outcome))})"
            print(
                f"| {size} MiB argument, hit | {name} | {seconds_text(median)} {spread} "
                f"| {ratio_text(median, xxh3)} | xxh3 |"
            )
    for name in LIBRARIES:
        apparent, allocated = equal[name]
        print(
            f"| {EQUAL_RESULT_CALLS} calls, one 10 MiB result: disk | {name} "
            f"| {bytes_text(apparent)} (du {bytes_text(allocated)}) "
            f"| {ratio_text(apparent, RESULT_BYTES)} (du {ratio_text(allocated, RESULT_BYTES)}) "
            "| one copy |"
        )
    theirs = statistics.median(parallel["diskcache memoize"])
    for name in PARALLEL:
        rates = parallel[name]
        print(
            f"| {args.processes} processes, hits per second | {name} "
            f"| {statistics.median(rates):,.0f} ({min(rates):,.0f} .. {max(rates):,.0f}) "
            f"| {ratio_text(statistics.median(rates), theirs)} | diskcache memoize |"
        )
    print("\nTargets:")
    for label, ok, value in target_checks(tiny, large, equal, parallel):
        print(f"- {'PASS' if ok else 'FAIL'}: {label}: {value}")


def target_checks(
    tiny: dict[str, list[float]],
    large: dict[int, tuple[list[float], dict[str, Any]]],
    equal: dict[str, tuple[int, int]],
    parallel: dict[str, list[float]],
) -> list[tuple[str, bool, str]]:
    """(target, met, measured value) for each target of the issue."""
    hit = statistics.median(tiny["marimo_store"])
    floor = statistics.median(tiny["floor"])
    checks = [
        ("tiny hit <= 12 µs per call", hit <= 12e-6, micros_text(hit)),
        ("tiny hit <= 1.3x its floor", hit <= 1.3 * floor, ratio_text(hit, floor)),
    ]
    for size, (hashing, results) in large.items():
        ours = statistics.median(results["marimo_store"])
        xxh3 = statistics.median(hashing)
        checks.append(
            (
                f"{size} MiB argument hit <= 1.35x one xxh3 pass",
                ours <= 1.35 * xxh3,
                ratio_text(ours, xxh3),
            )
        )
    apparent, allocated = equal["marimo_store"]
    checks.append(
        (
            f"{EQUAL_RESULT_CALLS} equal 10 MiB results <= 1.1x one copy on disk",
            max(apparent, allocated) <= 1.1 * RESULT_BYTES,
            f"{ratio_text(apparent, RESULT_BYTES)} (du {ratio_text(allocated, RESULT_BYTES)})",
        )
    )
    ours_rate, theirs_rate = (statistics.median(parallel[name]) for name in PARALLEL)
    checks.append(
        (
            "hits per second from several processes >= diskcache's",
            ours_rate >= theirs_rate,
            ratio_text(ours_rate, theirs_rate),
        )
    )
    return checks


def sizes(text: str) -> list[int]:
    return [positive(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes-mib", type=sizes, default=[1024, 256])
    parser.add_argument("--batch-seconds", type=float, default=0.5)
    parser.add_argument("--processes", type=positive, default=4)
    parser.add_argument("--keys", type=positive, default=1000)
    parser.add_argument("--seconds", type=float, default=2.0)
    scratch_arguments(parser)
    args = parser.parse_args(argv)
    with scratch_directory(args.dir, "cache-") as root:
        progress("tiny hits")
        tiny = tiny_hits(root, args.repeat, args.batch_seconds)
        large = {size: large_hits(root, size, args.repeat) for size in args.sizes_mib}
        equal = equal_results(root)
        parallel = parallel_hits(root, args.repeat, args.processes, args.keys, args.seconds)
        report(args, root, tiny, large, equal, parallel=parallel)


if __name__ == "__main__":
    main()
