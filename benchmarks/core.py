"""Core costs of marimo_store: put/get of a large array and of many small entries.

Two workloads, each measured side by side with a peer in the same run, and
reported as medians over --repeat repetitions (ratio = marimo_store / peer,
lower is better):

Large: one float64 numpy array of --size-mib MiB (random, generated once).
Every repetition changes one element (`arr[0]`) before writing, so each put
stores new content (dedup would otherwise make it free) and each `np.save`
writes the very same bytes to a fresh file.

- put, durability="flush" vs `np.save`;
- put, durability="fsync" vs `np.save` + `os.fsync` of the file and of its
  directory (what a durable new file needs; the store fsyncs the object,
  its fan-out directory and its log segment);
- get with memory_map=True vs `np.load(mmap_mode="r")`: "warm" is the first
  get by the instance that did the put (it knows the object is verified);
  "cold" is a new store instance in a new process (constructed, then only
  `get` is timed); the object was verified on this machine when it was
  written (recorded in `local/`, see docs/format.md), so it is not hashed
  again; "cold, unverified" first deletes that record, so the new process
  hashes the whole object once (what a file synced in from another
  machine costs on its first read);
- get with memory_map=False (eager, writable) vs `np.load()`, warm (writer
  instance) and cold (new process); warm also vs its floor, the array's
  bytes read (`readinto`) into `np.empty`, memory never zero-filled.

Each result is touched (the sum of its last 8 elements) inside the timed
region, so no lazy work is hidden; a memory-mapped result is not summed
whole, which would measure page faults rather than `get`.

Small: N (--small) entries, each with a distinct key and one small variable
`{"i": i, "s": f"row{i}"}` (inlined in the log record), vs one pickle file
per entry (the way marimo's legacy cache stores them: `pickle.dump` to
`<dir>/<key>.pickle.tmp`, then `os.replace`). Per-entry times are the
total time of a repetition divided by N (median over repetitions). Gets are
done by a fresh store instance (in this process) in a shuffled key order:
"open" is the constructor plus the first get (which reads the whole log
once), "steady" is the remaining N-1 gets divided by N-1. Every first hit
of a key queues an access record (LRU recency), written in one batch at
`close()` (counted in "bytes the gets appended"). Sizes are measured
after the puts (and `close()`): apparent (sum of file sizes) and
allocated (st_blocks * 512 of files and directories, like `du`).

Before every timed write the script calls `os.sync()` (untimed), so neither
side pays for the other's write-back. The OS page cache is warm for every
read (the files were just written); "cold" means a new process, not a cold
page cache.

    .venv/bin/python -m benchmarks.core [--size-mib 1024] [--small 100000]
        [--repeat 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import pickle
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from benchmarks._common import (
    REPO,
    alternating,
    bytes_text,
    disk_usage,
    machine_info,
    micros_text,
    non_negative,
    open_store,
    progress,
    ratio_text,
    scratch_arguments,
    scratch_directory,
    seconds_text,
)
from marimo_store import Entry, ExecutionKey

T = TypeVar("T")

WARM_GET_REPEATS = 100
"""Extra memory-mapped gets per repetition, for a steady-state figure."""

# A new process: construct the store, then time only `get` (and the touch),
# and `np.load` of the same array in the same way, in the order given.
# argv: store path, block id, module hash, .npy path, "mmap" or "eager",
# expected arr[0], "store-first" or "np-first".
COLD_GET = """\
import json, sys, time
import numpy as np
from marimo_store import ExecutionKey, FsPersistentStore
path, block, module, npy, mode, first, order = sys.argv[1:8]
memory_map = mode == "mmap"
store = FsPersistentStore(path, memory_map=memory_map, cleanup_on_exit=False)
key = ExecutionKey(block, module)
clock = time.perf_counter
def get():
    global value, got
    start = clock()
    entry = store.get(key)
    value = entry.variables["x"]
    float(np.asarray(value[-8:]).sum())
    got = clock() - start
def load():
    global peer, loaded
    start = clock()
    peer = np.load(npy, mmap_mode="r" if memory_map else None)
    float(np.asarray(peer[-8:]).sum())
    loaded = clock() - start
for step in (get, load) if order == "store-first" else (load, get):
    step()
ok = (
    value.shape == peer.shape
    and float(value[0]) == float(peer[0]) == float(first)
    and (memory_map or bool(value.flags.writeable))
)
print(json.dumps({"get": got, "np": loaded, "ok": ok}))
"""


# -- helpers ---------------------------------------------------------------------------


class Samples:
    """Named lists of seconds (or bytes), one value per repetition."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def spread(self, name: str) -> tuple[float, float]:
        return min(self.values[name]), max(self.values[name])


def timed(function: Callable[[], T]) -> tuple[float, T]:
    """Seconds taken by `function()`, and its result."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def touch(array: np.ndarray[Any, Any]) -> float:
    """Read the last few elements: forces whatever a lazy load deferred."""
    return float(np.asarray(array[-8:]).sum())


def in_turn(steps: Sequence[Callable[[], None]], rep: int) -> None:
    """Run `steps` in `alternating` order."""
    for step in alternating(steps, rep):
        step()


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- large workload --------------------------------------------------------------------


def np_save_durable(path: str, array: np.ndarray[Any, Any]) -> None:
    """`np.save`, then fsync the file and its directory."""
    with open(path, "wb") as file:
        np.save(file, array)
        file.flush()
        os.fsync(file.fileno())
    fsync_directory(os.path.dirname(path))


def cold_get(
    store_path: str, key: ExecutionKey, npy: str, mode: str, *, first: float, rep: int
) -> Any:
    """Run COLD_GET in a new process; its JSON result."""
    command = [
        sys.executable,
        "-c",
        COLD_GET,
        store_path,
        key.block_id,
        key.module_hash,
        npy,
        mode,
        repr(first),
        "store-first" if rep % 2 == 0 else "np-first",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cold get failed ({done.returncode}):\n{done.stderr}")
    result = json.loads(done.stdout)
    if not result["ok"]:
        raise SystemExit(f"cold {mode} get returned a wrong value: {result}")
    return result


def large_flush_round(
    root: str, rep: int, array: np.ndarray[Any, Any], samples: Samples
) -> tuple[str, ExecutionKey, str]:
    """Put (flush) vs np.save; warm mmap gets vs np.load(mmap_mode="r").

    Returns the store path, the key and the .npy path for the cold gets.
    """
    array[0] = float(rep)
    store_path = os.path.join(root, f"large-flush-{rep}")
    npy = os.path.join(root, f"large-flush-{rep}.npy")
    store = open_store(store_path, durability="flush", memory_map=True)
    store.put(Entry.of(ExecutionKey("warmup", f"w{rep}"), {"x": 0}))  # creates the layout
    key = ExecutionKey("large", f"flush-{rep}")
    entry = Entry.of(key, {"x": array})

    def put() -> None:
        os.sync()
        seconds, _ = timed(lambda: store.put(entry))
        samples.add("put flush", seconds)

    def save() -> None:
        os.sync()
        seconds, _ = timed(lambda: np.save(npy, array))
        samples.add("np.save", seconds)

    in_turn((put, save), rep)

    def get_mmap() -> float:
        found = store.get(key)
        assert found is not None
        return touch(found.variables["x"])

    def load_mmap() -> float:
        return touch(np.load(npy, mmap_mode="r"))

    in_turn(
        (
            lambda: samples.add("get mmap warm", timed(get_mmap)[0]),
            lambda: samples.add("np.load mmap", timed(load_mmap)[0]),
        ),
        rep,
    )
    found = store.get(key)
    assert found is not None
    value = found.variables["x"]
    # A memory-mapped hit is copy-on-write: writable, its writes private.
    if value.shape != array.shape or float(value[0]) != float(rep):
        raise SystemExit("warm mmap get returned a wrong value")
    del value, found
    repeated = [timed(get_mmap)[0] for _ in range(WARM_GET_REPEATS)]
    samples.add("get mmap warm repeated", statistics.median(repeated))
    repeated = [timed(load_mmap)[0] for _ in range(WARM_GET_REPEATS)]
    samples.add("np.load mmap repeated", statistics.median(repeated))
    store.close()
    return store_path, key, npy


def large_fsync_round(
    root: str, rep: int, array: np.ndarray[Any, Any], samples: Samples
) -> tuple[str, ExecutionKey, str]:
    """Put (fsync) vs np.save + fsync; warm eager get vs np.load()."""
    first = -1.0 - rep
    array[0] = first
    store_path = os.path.join(root, f"large-fsync-{rep}")
    npy = os.path.join(root, f"large-fsync-{rep}.npy")
    store = open_store(store_path, durability="fsync", memory_map=False)
    store.put(Entry.of(ExecutionKey("warmup", f"w{rep}"), {"x": 0}))
    key = ExecutionKey("large", f"fsync-{rep}")
    entry = Entry.of(key, {"x": array})

    def put() -> None:
        os.sync()
        seconds, _ = timed(lambda: store.put(entry))
        samples.add("put fsync", seconds)

    def save() -> None:
        os.sync()
        seconds, _ = timed(lambda: np_save_durable(npy, array))
        samples.add("np.save+fsync", seconds)

    in_turn((put, save), rep)

    def get_eager() -> np.ndarray[Any, Any]:
        found = store.get(key)
        assert found is not None
        value: np.ndarray[Any, Any] = found.variables["x"]
        touch(value)
        return value

    def load_eager() -> np.ndarray[Any, Any]:
        value: np.ndarray[Any, Any] = np.load(npy)
        touch(value)
        return value

    def measure_get() -> None:
        seconds, value = timed(get_eager)
        samples.add("get eager warm", seconds)
        if value.shape != array.shape or float(value[0]) != first or not value.flags.writeable:
            raise SystemExit("warm eager get returned a wrong (or read-only) value")

    def measure_load() -> None:
        seconds, value = timed(load_eager)
        samples.add("np.load eager", seconds)
        if value.shape != array.shape or float(value[0]) != first:
            raise SystemExit("np.load returned a wrong value")

    def measure_read_into() -> None:
        seconds, value = timed(lambda: empty_read_into(npy))
        samples.add("np.empty+readinto", seconds)
        if value.shape != array.shape or float(value[0]) != first:
            raise SystemExit("np.empty + readinto returned a wrong value")

    in_turn((measure_get, measure_load, measure_read_into), rep)
    store.close()
    return store_path, key, npy


def empty_read_into(npy: str) -> np.ndarray[Any, Any]:
    """The floor of an eager read: the array's bytes read into `np.empty`
    (memory never zero-filled first), touched like a get's result."""
    header: Any = np.load(npy, mmap_mode="r")  # only for the shape, dtype and data offset
    value: np.ndarray[Any, Any] = np.empty(header.shape, header.dtype)
    view = value.data.cast("B")
    with open(npy, "rb", buffering=0) as file:
        file.seek(header.offset)
        done = 0
        while done < len(view):
            count = file.readinto(view[done:])
            if not count:
                raise SystemExit(f"{npy} is shorter than its header says")
            done += count
    touch(value)
    return value


def large_workload(root: str, size_mib: int, repeat: int, seed: int) -> Samples:
    samples = Samples()
    count = size_mib * 2**20 // 8
    progress(f"large: generating a {size_mib} MiB float64 array ...")
    array = np.random.default_rng(seed).random(count)
    import xxhash

    for _ in range(3):
        seconds, _ = timed(lambda: xxhash.xxh3_128_digest(array.data))
        samples.add("xxh3", seconds)
    # One unmeasured round first: the first GiB written into a fresh page
    # cache costs several times what later ones do, on both sides.
    progress("large: unmeasured warm-up round ...")
    for warm_up in (large_flush_round, large_fsync_round):
        store_path, _, npy = warm_up(root, repeat, array, Samples())
        shutil.rmtree(store_path)
        os.remove(npy)
    for rep in range(repeat):
        started = time.perf_counter()
        flush_store, flush_key, flush_npy = large_flush_round(root, rep, array, samples)
        fsync_store, fsync_key, fsync_npy = large_fsync_round(root, rep, array, samples)
        cold = cold_get(flush_store, flush_key, flush_npy, "mmap", first=float(rep), rep=rep)
        samples.add("get mmap cold", cold["get"])
        samples.add("np.load mmap cold", cold["np"])
        shutil.rmtree(os.path.join(flush_store, "local"))
        cold = cold_get(flush_store, flush_key, flush_npy, "mmap", first=float(rep), rep=rep)
        samples.add("get mmap cold unverified", cold["get"])
        samples.add("np.load mmap cold unverified", cold["np"])
        cold = cold_get(fsync_store, fsync_key, fsync_npy, "eager", first=-1.0 - rep, rep=rep)
        samples.add("get eager cold", cold["get"])
        samples.add("np.load eager cold", cold["np"])
        for path in (flush_store, fsync_store):
            shutil.rmtree(path)
        for path in (flush_npy, fsync_npy):
            os.remove(path)
        gc.collect()
        progress(
            f"large: repetition {rep + 1}/{repeat} done in {time.perf_counter() - started:.1f} s"
        )
    return samples


# -- small workload --------------------------------------------------------------------


def small_keys(count: int) -> list[ExecutionKey]:
    """Distinct keys shaped like marimo's: a short cell id and a 32-hex module hash."""
    return [
        ExecutionKey(f"c{i % 100:03d}", hashlib.blake2b(b"%d" % i, digest_size=16).hexdigest())
        for i in range(count)
    ]


def small_value(i: int) -> dict[str, Any]:
    return {"i": i, "s": f"row{i}"}


def pickle_path(directory: str, key: ExecutionKey) -> str:
    return os.path.join(directory, f"{key.block_id}-{key.module_hash}.pickle")


def small_store_round(
    root: str, rep: int, keys: Sequence[ExecutionKey], order: Sequence[int], samples: Samples
) -> None:
    count = len(keys)
    path = os.path.join(root, f"small-store-{rep}")
    store = open_store(path)
    put = store.put
    of = Entry.of
    os.sync()
    start = time.perf_counter()
    for i, key in enumerate(keys):
        put(of(key, {"x": small_value(i)}))
    samples.add("store put", (time.perf_counter() - start) / count)
    store.close()
    del store
    apparent, allocated, files = disk_usage(path)
    samples.add("store apparent", apparent / count)
    samples.add("store allocated", allocated / count)
    samples.add("store files", files)

    first = keys[order[0]]
    start = time.perf_counter()
    reader = open_store(path)
    found = reader.get(first)
    opened = time.perf_counter() - start
    if found is None or found.variables["x"] != small_value(order[0]):
        raise SystemExit("small get (first) returned a wrong value")
    samples.add("store open", opened)
    get = reader.get
    rest = [keys[i] for i in order[1:]]
    start = time.perf_counter()
    for key in rest:
        get(key).variables["x"]["i"]  # type: ignore[union-attr]
    samples.add("store get", (time.perf_counter() - start) / max(len(rest), 1))
    # A second pass within the minute: repeat hits queue no access record.
    start = time.perf_counter()
    for key in rest:
        get(key).variables["x"]["i"]  # type: ignore[union-attr]
    samples.add("store get again", (time.perf_counter() - start) / max(len(rest), 1))
    for i in order[: min(count, 1000)]:  # checked after the timing
        found = get(keys[i])
        if found is None or found.variables["x"] != small_value(i):
            raise SystemExit("small get returned a wrong value")
    reader.close()
    del reader
    samples.add("store get growth", (disk_usage(path)[0] - apparent) / count)
    shutil.rmtree(path)


def small_pickle_round(
    root: str, rep: int, keys: Sequence[ExecutionKey], order: Sequence[int], samples: Samples
) -> None:
    count = len(keys)
    directory = os.path.join(root, f"small-pickle-{rep}")
    os.makedirs(directory)
    paths = [pickle_path(directory, key) for key in keys]
    dump, load, replace = pickle.dump, pickle.load, os.replace
    os.sync()
    start = time.perf_counter()
    for i, path in enumerate(paths):
        temp = path + ".tmp"
        with open(temp, "wb") as file:
            dump({"x": small_value(i)}, file, protocol=5)
        replace(temp, path)
    samples.add("pickle put", (time.perf_counter() - start) / count)
    apparent, allocated, files = disk_usage(directory)
    samples.add("pickle apparent", apparent / count)
    samples.add("pickle allocated", allocated / count)
    samples.add("pickle files", files)

    start = time.perf_counter()
    with open(paths[order[0]], "rb") as file:
        found = load(file)
    opened = time.perf_counter() - start
    if found["x"] != small_value(order[0]):
        raise SystemExit("pickle get (first) returned a wrong value")
    samples.add("pickle open", opened)
    rest = [paths[i] for i in order[1:]]
    start = time.perf_counter()
    for path in rest:
        with open(path, "rb") as file:
            load(file)["x"]["i"]
    samples.add("pickle get", (time.perf_counter() - start) / max(len(rest), 1))
    shutil.rmtree(directory)


def small_workload(root: str, count: int, repeat: int, seed: int) -> Samples:
    samples = Samples()
    keys = small_keys(count)
    order = list(range(count))
    random.Random(seed).shuffle(order)
    for rep in range(repeat):
        started = time.perf_counter()
        rounds = (small_store_round, small_pickle_round)
        for round_function in alternating(rounds, rep):
            round_function(root, rep, keys, order, samples)
            gc.collect()
        progress(
            f"small: repetition {rep + 1}/{repeat} done in {time.perf_counter() - started:.1f} s"
        )
    return samples


# -- report ----------------------------------------------------------------------------


def cell(samples: Samples, name: str, text: Callable[[float], str]) -> str:
    low, high = samples.spread(name)
    if len(samples.values[name]) == 1:
        return text(samples.median(name))
    return f"{text(samples.median(name))} ({text(low)} .. {text(high)})"


def large_rows(s: Samples, size_mib: int) -> list[tuple[str, str, str, str, str]]:
    size = f"{size_mib} MiB array"
    rows = []
    for label, mine, peer_label, theirs in (
        ('put, durability="flush"', "put flush", "np.save", "np.save"),
        (
            'put, durability="fsync"',
            "put fsync",
            "np.save + fsync(file) + fsync(dir)",
            "np.save+fsync",
        ),
        (
            "get mmap, warm (writer instance, first get after put)",
            "get mmap warm",
            'np.load(mmap_mode="r")',
            "np.load mmap",
        ),
        (
            f"get mmap, warm, repeated (median of {WARM_GET_REPEATS})",
            "get mmap warm repeated",
            f'np.load(mmap_mode="r"), median of {WARM_GET_REPEATS}',
            "np.load mmap repeated",
        ),
        (
            "get mmap, cold (new process; verified on this machine at put)",
            "get mmap cold",
            'np.load(mmap_mode="r") in that process',
            "np.load mmap cold",
        ),
        (
            "get mmap, cold, unverified (new process hashes the object once)",
            "get mmap cold unverified",
            'np.load(mmap_mode="r") in that process',
            "np.load mmap cold unverified",
        ),
        (
            "get eager (memory_map=False), warm (writer instance)",
            "get eager warm",
            "np.load()",
            "np.load eager",
        ),
        (
            "get eager (memory_map=False), warm (writer instance)",
            "get eager warm",
            "np.empty + readinto",
            "np.empty+readinto",
        ),
        (
            "get eager (memory_map=False), cold (new process)",
            "get eager cold",
            "np.load() in that process",
            "np.load eager cold",
        ),
    ):
        rows.append(
            (
                f"{size}: {label}",
                cell(s, mine, seconds_text),
                peer_label,
                cell(s, theirs, seconds_text),
                ratio_text(s.median(mine), s.median(theirs)),
            )
        )
    return rows


def small_rows(s: Samples, count: int) -> list[tuple[str, str, str, str, str]]:
    prefix = f"{count:,} small entries"
    rows: list[tuple[str, str, str, str, str]] = []
    for label, mine, peer_label, theirs in (
        ("put per entry (total / N)", "store put", "pickle.dump + os.replace", "pickle put"),
        (
            "bytes per entry, apparent (file sizes / N)",
            "store apparent",
            "same",
            "pickle apparent",
        ),
        (
            "bytes per entry, allocated (st_blocks*512 of files+dirs / N)",
            "store allocated",
            "same",
            "pickle allocated",
        ),
        (
            "open: constructor + first get (fresh instance, reads the log)",
            "store open",
            "first pickle.load",
            "pickle open",
        ),
        (
            "get per entry, steady (N-1 gets / (N-1), shuffled; each queues an access record)",
            "store get",
            "open + pickle.load",
            "pickle get",
        ),
        (
            "get per entry, second pass (repeat hits: no access record)",
            "store get again",
            "open + pickle.load (first pass)",
            "pickle get",
        ),
    ):
        unit = bytes_text if "bytes" in label else seconds_text if "open" in label else micros_text
        rows.append(
            (
                f"{prefix}: {label}",
                cell(s, mine, unit),
                peer_label,
                cell(s, theirs, unit),
                ratio_text(s.median(mine), s.median(theirs)),
            )
        )
    rows.append(
        (
            f"{prefix}: bytes the gets appended to the log, per entry (access records)",
            bytes_text(s.median("store get growth")),
            "",
            "0 B",
            "",
        )
    )
    rows.append(
        (
            f"{prefix}: files on disk",
            f"{s.median('store files'):,.0f}",
            "same",
            f"{s.median('pickle files'):,.0f}",
            ratio_text(s.median("store files"), s.median("pickle files")),
        )
    )
    return rows


def report(
    large: Samples | None, small: Samples | None, args: argparse.Namespace, root: str
) -> None:
    print("# marimo_store core benchmark: put/get vs numpy files and pickle files\n")
    print("\n".join(machine_info(root)))
    print(
        f"- `python -m benchmarks.core --size-mib {args.size_mib} --small {args.small} "
        f"--repeat {args.repeat}`; medians over {args.repeat} repetitions, "
        "(min .. max) in brackets; ratio = marimo_store / peer of the medians (lower is better)"
    )
    print()
    print("| workload: operation | marimo_store | peer | peer time | ratio |")
    print("|---|---:|---|---:|---:|")
    rows: list[tuple[str, str, str, str, str]] = []
    if large is not None:
        rows += large_rows(large, args.size_mib)
    if small is not None:
        rows += small_rows(small, args.small)
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    if large is not None:
        gib = args.size_mib / 1024
        hashed = large.median("xxh3")
        print(
            f"- xxh3-128 of the array (what put hashes, and what a cold get verifies): "
            f"{seconds_text(hashed)} ({gib / hashed:.1f} GiB/s)"
        )
        for name in ("put flush", "np.save", "put fsync", "np.save+fsync"):
            print(f"- {name}: {gib / large.median(name):.2f} GiB/s")
    print("\nTargets:")
    for label, ok, value in target_checks(large, small):
        print(f"- {'PASS' if ok else 'FAIL'}: {label}: {value}")
    if args.raw:
        print("\nEvery repetition (seconds, or bytes per entry):\n")
        for samples in (large, small):
            if samples is not None:
                for name, values in samples.values.items():
                    print(f"- {name}: " + ", ".join(f"{value:.6g}" for value in values))


def target_checks(large: Samples | None, small: Samples | None) -> list[tuple[str, bool, str]]:
    """(target, met, measured value) for each target of the issue."""
    checks: list[tuple[str, bool, str]] = []
    if large is not None:
        warm = large.median("get mmap warm")
        cold = large.median("get mmap cold")
        checks += [
            (
                "get via mmap <= 1 ms (warm: writer instance)",
                warm <= 1e-3,
                seconds_text(warm),
            ),
            (
                "get via mmap <= 1 ms (cold: new process, object verified on this machine)",
                cold <= 1e-3,
                seconds_text(cold),
            ),
            (
                "eager get <= 1.3x np.empty + readinto (warm)",
                large.median("get eager warm") <= 1.3 * large.median("np.empty+readinto"),
                ratio_text(large.median("get eager warm"), large.median("np.empty+readinto")),
            ),
            (
                'put <= 1.2x np.save with durability="flush"',
                large.median("put flush") <= 1.2 * large.median("np.save"),
                ratio_text(large.median("put flush"), large.median("np.save")),
            ),
        ]
    if small is not None:
        for kind in ("apparent", "allocated"):
            per_entry = small.median(f"store {kind}")
            checks.append(
                (
                    f"<= 300 bytes per small entry ({kind})",
                    per_entry <= 300,
                    bytes_text(per_entry),
                )
            )
    return checks


# -- main ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--size-mib", type=non_negative, default=1024, help="large array size (0: skip)"
    )
    parser.add_argument(
        "--small", type=non_negative, default=100_000, help="small entries (0: skip)"
    )
    scratch_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", action="store_true", help="also print every repetition's value")
    args = parser.parse_args(argv)
    with scratch_directory(args.dir, "core-") as root:
        large = (
            large_workload(root, args.size_mib, args.repeat, args.seed) if args.size_mib else None
        )
        small = small_workload(root, args.small, args.repeat, args.seed) if args.small else None
        report(large, small, args, root)


if __name__ == "__main__":
    main()
