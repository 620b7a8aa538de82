"""Cold-process cost of opening a store and reading one entry: marimo_store vs diskcache.

A notebook kernel or a pipeline worker is often a fresh process that opens
the cache, reads a handful of entries and exits, so what matters is the
interpreter start-up + import + open + first lookup, not the steady state.

For each N in --counts this script builds a marimo_store with N small
entries (then `cleanup()` keeping everything, so the store is one snapshot
and an empty log) and a diskcache.Cache with the same keys and values, then
runs FRESH subprocesses (`sys.executable -c ...`) and reports medians over
--repeat runs of:

(a) the wall time of a whole process that imports, opens and reads one
    random existing key, measured from the parent around `subprocess.run`
    (plus `python -c pass`, the interpreter's own start-up);
(b) inside a process (time.perf_counter, sent back as JSON): import time,
    open time (the constructor), first lookup (including any lazy loading)
    and steady lookup (median of 1000 gets of random existing keys).

The OS page cache is warm: the stores were just written and every variant
runs once, unmeasured, before the timed runs (that also writes the .pyc
files). This measures CPU cost of start-up, not disk reads.

A marimo_store `get` appends an access record to the log (LRU recency), so
every marimo_store run gets a fresh copy of the built store: each process
sees exactly one snapshot and an empty log. diskcache reads change nothing.

    .venv/bin/python -m benchmarks.open [--counts 1000,10000,100000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks._common import machine_info as core_machine_info
from benchmarks._common import micros_text, ratio_text

STEADY_LOOKUPS = 1000

# Each snippet takes its parameters from sys.argv, so the code is constant.
# (a) whole process: import, open, one lookup of an existing key.
MARIMO_WHOLE = """\
import sys
from marimo_store import ExecutionKey, FsPersistentStore
if FsPersistentStore(sys.argv[1]).get(ExecutionKey(sys.argv[2], sys.argv[3])) is None:
    raise SystemExit("miss")
"""
DISKCACHE_WHOLE = """\
import sys
from diskcache import Cache
Cache(sys.argv[1])[sys.argv[2]]
"""
BASELINE = "pass"

# (b) phases timed inside the process. argv: path, first key..., n, seed, lookups.
MARIMO_PHASES = """\
import sys, time
t0 = time.perf_counter()
from marimo_store import ExecutionKey, FsPersistentStore
t1 = time.perf_counter()
store = FsPersistentStore(sys.argv[1])
t2 = time.perf_counter()
entry = store.get(ExecutionKey(sys.argv[2], sys.argv[3]))
t3 = time.perf_counter()
if entry is None:
    raise SystemExit("miss")
import json, random, statistics
n, seed, lookups = map(int, sys.argv[4:7])
rng = random.Random(seed)
keys = [ExecutionKey(f"b{i % 100}", f"m{i}") for i in (rng.randrange(n) for _ in range(lookups))]
get, clock, samples = store.get, time.perf_counter, []
for key in keys:
    start = clock()
    found = get(key)
    samples.append(clock() - start)
    if found is None:
        raise SystemExit("miss")
print(json.dumps({"import": t1 - t0, "open": t2 - t1, "first": t3 - t2,
                  "steady": statistics.median(samples)}))
"""
DISKCACHE_PHASES = """\
import sys, time
t0 = time.perf_counter()
import diskcache
t1 = time.perf_counter()
cache = diskcache.Cache(sys.argv[1])
t2 = time.perf_counter()
value = cache[sys.argv[2]]
t3 = time.perf_counter()
import json, random, statistics
n, seed, lookups = map(int, sys.argv[3:6])
rng = random.Random(seed)
keys = [f"b{i % 100}/m{i}" for i in (rng.randrange(n) for _ in range(lookups))]
clock, samples = time.perf_counter, []
for key in keys:
    start = clock()
    cache[key]
    samples.append(clock() - start)
print(json.dumps({"import": t1 - t0, "open": t2 - t1, "first": t3 - t2,
                  "steady": statistics.median(samples)}))
"""


def marimo_key(i: int) -> tuple[str, str]:
    """block_id and module_hash of entry `i`."""
    return f"b{i % 100}", f"m{i}"


def diskcache_key(i: int) -> str:
    """The diskcache key of entry `i` (same block/module as marimo_store's)."""
    block, module = marimo_key(i)
    return f"{block}/{module}"


def value_of(i: int) -> dict[str, Any]:
    """A small value: pickled, it is inlined in the entry record."""
    return {"i": i, "name": f"value-{i}"}


def build_marimo(path: str, n: int) -> tuple[float, float]:
    """N entries, then a cleanup keeping all: one snapshot, empty log.

    Returns (seconds for the puts, seconds for `cleanup()`).
    """
    from marimo_store import DefaultCleanupStrategy, Entry, ExecutionKey, FsPersistentStore
    from marimo_store._retired import is_retired

    store = FsPersistentStore(path, cleanup_on_exit=False)
    start = time.perf_counter()
    for i in range(n):
        store.put(Entry.of(ExecutionKey(*marimo_key(i)), {"v": value_of(i)}))
    store.close()  # seal the segment so that cleanup deletes it
    built = time.perf_counter() - start
    keep_all = DefaultCleanupStrategy(max_entries_per_block=None, max_entries_per_module=None)
    start = time.perf_counter()
    report = store.cleanup(keep_all)
    cleaned = time.perf_counter() - start
    store.close()
    if report.entries_kept != n or report.dropped:
        raise SystemExit(f"cleanup kept {report.entries_kept} of {n} entries: {report}")
    snapshots = os.listdir(os.path.join(path, "snapshots"))
    log = os.path.join(path, "log")
    # In a git work tree (the default scratch directory is in the repository)
    # cleanup retires a segment instead of deleting it (docs/format.md §10.7).
    segments = [
        name
        for name in os.listdir(log)
        if not is_retired(os.path.join(log, name), os.path.getsize(os.path.join(log, name)))
    ]
    if len(snapshots) != 1 or segments:
        raise SystemExit(f"expected one snapshot and an empty log: {snapshots}, {segments}")
    return built, cleaned


def build_diskcache(path: str, n: int) -> float:
    """The same N keys and values in a diskcache.Cache; returns seconds."""
    import diskcache

    start = time.perf_counter()
    with diskcache.Cache(path) as cache, cache.transact():
        for i in range(n):
            cache[diskcache_key(i)] = value_of(i)
    return time.perf_counter() - start


def directory_bytes(path: str) -> int:
    """Total size of the files under `path`."""
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def child_environment(root: str) -> dict[str, str]:
    """The environment of the measured processes.

    Byte-code caching is forced on, into a private PYTHONPYCACHEPREFIX: with
    PYTHONDONTWRITEBYTECODE set (as in some sandboxes and CI images) a module
    whose source is newer than its .pyc is compiled again in every process,
    which measures the compiler, not the library. Nothing is written next
    to the sources.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(root, "pycache")
    return env


def run(code: str, args: Sequence[str], cwd: str, env: dict[str, str]) -> tuple[float, str]:
    """Run `python -c code args` in a fresh process: (wall seconds, stdout)."""
    command = [sys.executable, "-c", code, *args]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"subprocess failed ({done.returncode}): {command}\n{done.stderr}")
    return elapsed, done.stdout


def fresh_copy(pristine: str, scratch: str) -> Callable[[], str]:
    """A function returning a new copy of `pristine` (the previous one removed)."""
    target = os.path.join(scratch, "run")

    def copy() -> str:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(pristine, target)
        return target

    return copy


def measure(n: int, repeat: int, root: str, rng: random.Random) -> dict[str, Any]:
    """Build both stores with N entries and time the cold processes."""
    marimo_path = os.path.join(root, f"marimo-{n}")
    diskcache_path = os.path.join(root, f"diskcache-{n}")
    scratch = os.path.join(root, "scratch")
    os.makedirs(scratch, exist_ok=True)
    env = child_environment(root)
    built, cleaned = build_marimo(marimo_path, n)
    dc_built = build_diskcache(diskcache_path, n)
    print(
        f"N={n:>7}: marimo_store puts {built:.2f} s, cleanup() {cleaned:.2f} s; "
        f"diskcache sets {dc_built:.2f} s",
        file=sys.stderr,
        flush=True,
    )
    copy = fresh_copy(marimo_path, scratch)
    samples: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    # One unmeasured round first (writes .pyc files, warms the page cache),
    # then the variants interleaved so that drift hits them all alike.
    for round_number in range(repeat + 1):
        measured = round_number > 0
        i = rng.randrange(n)
        tail = [str(n), str(rng.randrange(2**32)), str(STEADY_LOOKUPS)]  # phases' argv
        wall, _ = run(BASELINE, [], scratch, env)
        if measured:
            add("baseline", wall)
        wall, _ = run(MARIMO_WHOLE, [copy(), *marimo_key(i)], scratch, env)
        if measured:
            add("marimo whole", wall)
        wall, _ = run(DISKCACHE_WHOLE, [diskcache_path, diskcache_key(i)], scratch, env)
        if measured:
            add("diskcache whole", wall)
        for system, code, args in (
            ("marimo", MARIMO_PHASES, [copy(), *marimo_key(i), *tail]),
            ("diskcache", DISKCACHE_PHASES, [diskcache_path, diskcache_key(i), *tail]),
        ):
            _, out = run(code, args, scratch, env)
            if measured:
                phases = json.loads(out)
                phases["import+open"] = phases["import"] + phases["open"]
                for phase, seconds in phases.items():
                    add(f"{system} {phase}", seconds)
    shutil.rmtree(scratch, ignore_errors=True)
    result = {name: statistics.median(values) for name, values in samples.items()}
    result.update(
        built=built,
        cleanup=cleaned,
        diskcache_built=dc_built,
        marimo_bytes=directory_bytes(marimo_path),
        diskcache_bytes=directory_bytes(diskcache_path),
    )
    return result


def machine_info(root: str) -> list[str]:
    """core.py's description of the machine, plus what this comparison depends on."""
    import sqlite3

    import diskcache

    return [
        *core_machine_info(root),
        f"- diskcache {diskcache.__version__}, SQLite {sqlite3.sqlite_version}",
        "- OS page cache warm (stores just written, one unmeasured warm-up run per variant); "
        "every process is new, so imports and opens are cold in the interpreter",
        "- byte-code caches valid (written by the warm-up run into a private "
        f"PYTHONPYCACHEPREFIX; PYTHONDONTWRITEBYTECODE was "
        f"{os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')!r} here and is dropped)",
    ]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def table(results: dict[int, dict[str, Any]], repeat: int) -> list[str]:
    """The Markdown table: one row per N and metric."""
    lines = [
        "| N | metric | marimo_store | diskcache | ratio |",
        "|---:|---|---:|---:|---:|",
    ]
    for n, r in results.items():
        rows: list[tuple[str, str, str, str]] = [
            ("interpreter alone (`python -c pass`)", ms(r["baseline"]), "", ""),
            (
                "whole cold process (import, open, 1 lookup)",
                ms(r["marimo whole"]),
                ms(r["diskcache whole"]),
                ratio_text(r["marimo whole"], r["diskcache whole"]),
            ),
            (
                "… minus interpreter start-up",
                ms(r["marimo whole"] - r["baseline"]),
                ms(r["diskcache whole"] - r["baseline"]),
                ratio_text(r["marimo whole"] - r["baseline"], r["diskcache whole"] - r["baseline"]),
            ),
        ]
        for phase, label, unit in (
            ("import", "import", ms),
            ("open", "open (constructor)", ms),
            ("import+open", "import + open", ms),
            ("first", "first lookup (incl. lazy loading)", micros_text),
            ("steady", f"steady lookup (median of {STEADY_LOOKUPS} random keys)", micros_text),
        ):
            mine, theirs = r[f"marimo {phase}"], r[f"diskcache {phase}"]
            rows.append((label, unit(mine), unit(theirs), ratio_text(mine, theirs)))
        rows += [
            (
                "build N entries (puts / sets in 1 transaction; not measured above)",
                f"{r['built']:.2f} s",
                f"{r['diskcache_built']:.2f} s",
                ratio_text(r["built"], r["diskcache_built"]),
            ),
            ("cleanup() time (snapshot of all N)", f"{r['cleanup']:.2f} s", "", ""),
            (
                "size on disk",
                f"{r['marimo_bytes'] / 1e6:.2f} MB",
                f"{r['diskcache_bytes'] / 1e6:.2f} MB",
                ratio_text(r["marimo_bytes"], r["diskcache_bytes"]),
            ),
        ]
        for label, mine, theirs, rel in rows:
            lines.append(f"| {n:,} | {label} | {mine} | {theirs} | {rel} |")
    lines.append("")
    lines.append(f"Medians over {repeat} runs; ratio = marimo_store / diskcache (lower is better).")
    return lines


def targets(n: int, r: dict[str, Any]) -> list[str]:
    """The open-time targets, checked at the largest N."""
    checks = [
        (
            "whole cold process ≤ 1.1x diskcache's",
            r["marimo whole"] <= 1.1 * r["diskcache whole"],
            ratio_text(r["marimo whole"], r["diskcache whole"]),
        ),
        ("import + open ≤ 20 ms", r["marimo import+open"] <= 0.020, ms(r["marimo import+open"])),
        ("first lookup ≤ 0.5 ms", r["marimo first"] <= 0.0005, micros_text(r["marimo first"])),
    ]
    return [
        f"- {'PASS' if ok else 'FAIL'}: {label} (N={n:,}: {value})" for label, ok, value in checks
    ]


def parse_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or any(count < 1 for count in counts):
        raise argparse.ArgumentTypeError("counts must be positive integers")
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=parse_counts, default=[1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", help="where to build the stores (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    rng = random.Random(args.seed)
    root = tempfile.mkdtemp(prefix="marimo-store-open-", dir=args.dir)
    try:
        results = {n: measure(n, args.repeat, root, rng) for n in args.counts}
        print("# Opening a store in a cold process: marimo_store vs diskcache\n")
        print("\n".join(machine_info(root)))
        print()
        print("\n".join(table(results, args.repeat)))
        print("\nTargets:")
        largest = max(results)
        print("\n".join(targets(largest, results[largest])))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
