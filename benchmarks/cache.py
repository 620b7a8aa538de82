"""Costs of `persistent_cache` against joblib.Memory and diskcache's memoize.

The same functions are cached by the three libraries in one run, and the
table shows medians over --repeat rounds (ratio = the library / the
reference named in the row; lower is better):

1. Tiny hit: `add(a, b) -> a + b` called with `(1, 2)` after one miss; the
   time per call of a hit (each round times a batch of calls lasting about
   --batch-seconds and divides). Reference: marimo_store.
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

Every round runs the libraries in turn, in an order that alternates, so
whatever the first one pays (page faults, CPU frequency) is shared.

    .venv/bin/python -m benchmarks.cache [--sizes-mib 1024,256] [--repeat 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xxhash
from diskcache import Cache
from joblib import Memory

from benchmarks._common import (
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


def add(a: int, b: int) -> int:
    return a + b


def first(x: np.ndarray[Any, Any]) -> float:
    return float(x[0])


def constant(i: int) -> np.ndarray[Any, Any]:
    return np.ones(RESULT_BYTES // 8)


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
    """Seconds per hit of `add(1, 2)`, one value per round, for each library."""
    cached = {name: wrap(add) for name, (_, wrap) in wrappers(os.path.join(root, "tiny")).items()}
    return seconds_per_call(
        {name: functools.partial(cached[name], 1, 2) for name in LIBRARIES}, repeat, batch_seconds
    )


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


def report(
    args: argparse.Namespace,
    root: str,
    tiny: dict[str, list[float]],
    large: dict[int, tuple[list[float], dict[str, Any]]],
    equal: dict[str, tuple[int, int]],
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
    for name in LIBRARIES:
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
    print("\nTargets:")
    for label, ok, value in target_checks(tiny, large, equal):
        print(f"- {'PASS' if ok else 'FAIL'}: {label}: {value}")


def target_checks(
    tiny: dict[str, list[float]],
    large: dict[int, tuple[list[float], dict[str, Any]]],
    equal: dict[str, tuple[int, int]],
) -> list[tuple[str, bool, str]]:
    """(target, met, measured value) for each target of the issue."""
    hit = statistics.median(tiny["marimo_store"])
    checks = [("tiny hit <= 12 µs per call", hit <= 12e-6, micros_text(hit))]
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
    return checks


def sizes(text: str) -> list[int]:
    return [positive(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes-mib", type=sizes, default=[1024, 256])
    parser.add_argument("--batch-seconds", type=float, default=0.5)
    scratch_arguments(parser)
    args = parser.parse_args(argv)
    with scratch_directory(args.dir, "cache-") as root:
        progress("tiny hits")
        tiny = tiny_hits(root, args.repeat, args.batch_seconds)
        large = {size: large_hits(root, size, args.repeat) for size in args.sizes_mib}
        equal = equal_results(root)
        report(args, root, tiny, large, equal)


if __name__ == "__main__":
    main()
