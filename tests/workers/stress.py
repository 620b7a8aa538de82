"""Functions run in other processes by tests/survival/test_stress.py.

Like `concurrency.py`, this module is importable by name so that the "spawn"
start method can run its functions in a fresh interpreter; it is also run as
a script (`python -m workers.stress cleanup-child <path>`) for the crash
test, which SIGKILLs that process in the middle of a cleanup, and as
`python -m workers.stress chaos <path> <seed>` for the chaos test.

Every stored value is a deterministic function of its key (`stress_value`),
so whoever reads a value can tell whether it is the right one. Workers never
raise into the parent: they send ("ok", stats) or ("error", text) through a
queue, and the parent asserts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import sys
import time
import traceback
import warnings
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from marimo_store import (
    DefaultCleanupStrategy,
    Entry,
    EntryMetadata,
    ExecutionKey,
    FsPersistentStore,
    StoreWarning,
)

if TYPE_CHECKING:  # imported where used: the crash test's cleanup child never needs it
    import numpy as np

ARRAY_ITEMS = 9000
"""int64 items of the arrays: 72 000 bytes, above the 64 KiB out-of-band limit."""

ARRAY_POOL = 6
"""Distinct arrays of `stress_value`: keys share them (deduplicated buffers)."""

MAX_PAD = 3000


def stable_hash(text: str) -> int:
    """A hash that is the same in every process (unlike `hash()`)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def pool_array(index: int) -> np.ndarray:
    """One of `ARRAY_POOL` distinct arrays (72 000 bytes each)."""
    import numpy as np

    return np.arange(ARRAY_ITEMS, dtype=np.int64) * (index + 1) + index


def stress_value(block: str, module: str) -> dict[str, Any]:
    """The variables stored under `(block, module)`: a function of the key only.

    `k` names the key (inline); `pad` is 0..3000 characters derived from the
    key, so it is inline for some keys and an object file of its own for the
    others (a swapped object would show); one key in four also holds one of
    a few shared numpy arrays (an out-of-band buffer object, deduplicated).
    """
    digest = stable_hash(f"{block}\x00{module}")
    seed = f"{block}/{module};"
    length = digest % (MAX_PAD + 1)
    value: dict[str, Any] = {
        "k": [block, module],
        "pad": (seed * (length // len(seed) + 1))[:length],
    }
    if (digest >> 20) % 4 == 0:
        value["arr"] = pool_array((digest >> 24) % ARRAY_POOL)
    return value


def mismatch(got: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> str | None:
    """Why `got` is not `expected` (None if it is); arrays compared exactly."""
    import numpy as np

    if got is None:
        return "miss"
    got = dict(got)
    if set(got) != set(expected):
        return f"variables {sorted(got)} != {sorted(expected)}"
    for name, want in expected.items():
        have = got[name]
        if isinstance(want, np.ndarray):
            if not (
                isinstance(have, np.ndarray)
                and have.dtype == want.dtype
                and have.shape == want.shape
                and np.array_equal(have, want)
            ):
                return f"{name}: wrong array {type(have).__name__} {getattr(have, 'shape', '')}"
        elif have != want:
            return f"{name}: {str(have)[:80]!r} != {str(want)[:80]!r}"
    return None


def store_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]


def _report(queue: Any, name: str, body: Any) -> None:
    """Run `body()` (returning stats), catching everything, and report it."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stats = body()
        problems = store_warnings(caught)
        if problems:
            queue.put((name, "error", f"StoreWarnings: {problems[:5]}"))
        else:
            queue.put((name, "ok", stats))
    except BaseException:
        queue.put((name, "error", traceback.format_exc()))


# -- 1. cleanup concurrency ----------------------------------------------------------

STRESS_BLOCKS = 20
STRESS_MODULES = 50
GC_EVERY = 3
"""Cleaner iterations between two with object GC."""


class RecordedDefault(DefaultCleanupStrategy):
    """The default strategy, appending every key it drops (and the rule) to
    a file that every process of the test shares: which completed puts a
    cleanup dropped on purpose. Every cleanup goes through it, exit and
    background ones included."""

    __slots__ = ()

    def __call__(
        self, entries: Collection[EntryMetadata], now_ms: int
    ) -> Mapping[ExecutionKey, str]:
        decisions = super().__call__(entries, now_ms)
        drops = os.environ.get("MARIMO_STORE_STRESS_DROPS")
        if decisions and drops:
            lines = "".join(
                f"{k.block_id} {k.module_hash} {k.created_at} {why}\n"
                for k, why in decisions.items()
            )
            with open(drops, "a") as file:
                file.write(lines)
        return decisions


COUNTED = RecordedDefault(max_entries_per_block=3, max_entries_per_module=2)
"""What the cleanup stress keeps (count limits are opt-in: it needs drops),
recording what it drops."""


def recorded_drops(path: str) -> dict[tuple[str, str, int], str]:
    """Every key `RecordedDefault` dropped, with its rule."""
    found: dict[tuple[str, str, int], str] = {}
    if os.path.exists(path):
        with open(path) as file:
            for line in file:
                block, module, created_at, rule = line.rstrip("\n").split(" ", 3)
                found.setdefault((block, module, int(created_at)), rule)
    return found


def stress_key_space(rng: random.Random) -> tuple[str, str]:
    return f"b{rng.randrange(STRESS_BLOCKS):02d}", f"m{rng.randrange(STRESS_MODULES):02d}"


def clean_loop(path: str, seconds: float, seed: int, name: str, queue: Any) -> None:
    """Call `cleanup()` until the time is up; every GC_EVERY-th with object GC.

    A short random pause between cleanups leaves the putters some CPU (the
    machine may have two cores for four processes).
    """

    def body() -> dict[str, Any]:
        rng = random.Random(seed)
        store = FsPersistentStore(path, object_grace_seconds=0, cleanup_strategy=COUNTED)
        deadline = time.monotonic() + seconds
        stats: dict[str, Any] = {
            "cleanups": 0,
            "gc": 0,
            "dropped": 0,
            "objects_deleted": 0,
            "longest": 0.0,
            "skipped": [],
        }
        while time.monotonic() < deadline:
            gc = stats["cleanups"] % GC_EVERY == GC_EVERY - 1
            started = time.monotonic()
            report = store.cleanup(include_content=gc)
            stats["longest"] = max(stats["longest"], time.monotonic() - started)
            stats["cleanups"] += 1
            stats["gc"] += gc
            stats["dropped"] += len(report.dropped)
            stats["objects_deleted"] += report.objects_deleted
            stats["skipped"] += report.skipped
            missing = [d for d in report.dropped if "missing" in d.reason]
            if missing:
                raise AssertionError(f"cleanup dropped entries as broken: {missing[:3]}")
            time.sleep(rng.uniform(0, 0.01))
        store.close()
        return stats

    _report(queue, name, body)


def put_get_loop(path: str, seconds: float, seed: int, name: str, queue: Any) -> None:
    """Put random keys of the bounded key space and get random keys, checking values."""

    def body() -> dict[str, Any]:
        rng = random.Random(seed)
        store = FsPersistentStore(path, object_grace_seconds=0, cleanup_strategy=COUNTED)
        deadline = time.monotonic() + seconds
        stats: dict[str, Any] = {"puts": 0, "gets": 0, "hits": 0, "put_then_hit": 0, "keys": []}
        while time.monotonic() < deadline:
            block, module = stress_key_space(rng)
            expected = stress_value(block, module)
            stored = store.put(Entry.of(ExecutionKey(block, module), expected))
            stats["keys"].append([block, module, stored.created_at])  # the ledger
            stats["puts"] += 1
            # The key just put: a miss only if a cleanup dropped it meanwhile.
            entry = store.get(ExecutionKey(block, module))
            if entry is not None:
                stats["put_then_hit"] += 1
                problem = mismatch(entry.variables, expected)
                if problem:
                    raise AssertionError(f"get({block}, {module}) after put: {problem}")
            for _ in range(3):
                block, module = stress_key_space(rng)
                entry = store.get(ExecutionKey(block, module))
                stats["gets"] += 1
                if entry is not None:
                    stats["hits"] += 1
                    problem = mismatch(entry.variables, stress_value(block, module))
                    if problem:
                        raise AssertionError(f"get({block}, {module}): {problem}")
                    if entry.key.block_id != block or entry.key.module_hash != module:
                        raise AssertionError(f"get({block}, {module}) returned {entry.key}")
        store.close()
        return stats

    _report(queue, name, body)


# -- 2. object GC racing deduplicating puts -----------------------------------------

KEEP_NEWEST = 5
DEDUP_BLOCKS = 3
DEDUP_ARRAYS = 10
DEDUP_STRINGS = 7


def keep_newest_strategy() -> DefaultCleanupStrategy:
    """Drops all but the newest KEEP_NEWEST entries of each block."""
    return DefaultCleanupStrategy(max_entries_per_block=KEEP_NEWEST, max_entries_per_module=None)


def dedup_key(worker: int, i: int) -> tuple[str, str]:
    return f"w{worker}-b{i % DEDUP_BLOCKS}", f"m{i:06d}"


def dedup_value(block: str, module: str) -> dict[str, Any]:
    """Large values from small pools, chosen by the put's number `i`.

    Runs of consecutive puts share them (nearly every put deduplicates), and
    the pools are cycled through slowly compared to the rate of cleanups:
    once the entries using a value are dropped, object GC deletes it, and a
    later put brings the same object back.
    """
    i = int(module[1:])
    return {
        "k": [block, module],
        "arr": pool_array(i // 100 % DEDUP_ARRAYS),
        "big": f"shared-{i // 60 % DEDUP_STRINGS}-" * 400,
    }


def dedup_put_loop(  # noqa: PLR0917 - a spawned Process passes its args positionally
    path: str, seconds: float, worker: int, grace: float, name: str, queue: Any
) -> None:
    """Put new keys with pooled values; the key just put must load right away."""

    def body() -> dict[str, Any]:
        store = FsPersistentStore(
            path, object_grace_seconds=grace, cleanup_strategy=keep_newest_strategy()
        )
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            block, module = dedup_key(worker, i)
            expected = dedup_value(block, module)
            metadata = store.put(Entry.of(ExecutionKey(block, module), expected))
            # The newest entry of its block (only this worker writes the block)
            # is never dropped, so it must load, objects and all.
            entry = store.get(metadata.key, exact_match_created_at=True)
            problem = mismatch(None if entry is None else entry.variables, expected)
            if problem:
                raise AssertionError(f"get({block}, {module}) right after its put: {problem}")
            i += 1
        store.close()
        return {"puts": i}

    _report(queue, name, body)


def gc_loop(path: str, seconds: float, grace: float, name: str, queue: Any) -> None:
    """Cleanup with object GC in a loop. With a long `grace`, only the objects
    of entries the cleanup saw dropped can go: the objects lock, not the
    grace, is what keeps the racing puts' objects."""

    def body() -> dict[str, Any]:
        store = FsPersistentStore(path, object_grace_seconds=grace)
        deadline = time.monotonic() + seconds
        stats = {"cleanups": 0, "dropped": 0, "objects_deleted": 0, "skipped": 0}
        while time.monotonic() < deadline:
            report = store.cleanup(keep_newest_strategy(), include_content=True)
            stats["cleanups"] += 1
            stats["dropped"] += len(report.dropped)
            stats["objects_deleted"] += report.objects_deleted
            stats["skipped"] += len(report.skipped)
            missing = [d for d in report.dropped if "missing" in d.reason]
            if missing:
                raise AssertionError(f"cleanup found entries with missing objects: {missing[:3]}")
            time.sleep(0.005)
        store.close()
        return stats

    _report(queue, name, body)


# -- 3. SIGKILL during cleanup ---------------------------------------------------------

CRASH_BLOCKS = 100


def crash_key(i: int) -> tuple[str, str]:
    return f"c{i % CRASH_BLOCKS:03d}", f"n{i:05d}"


class DropFraction:
    """Drops the entries whose key hashes (with `salt`) below `percent` %."""

    def __init__(self, salt: int, percent: int) -> None:
        self.salt = salt
        self.percent = percent

    def __call__(self, entries: Collection[EntryMetadata], now_ms: int) -> dict[ExecutionKey, str]:
        return {
            e.key: f"drop-fraction {self.salt}"
            for e in entries
            if stable_hash(f"{self.salt}\x00{e.key.block_id}\x00{e.key.module_hash}") % 100
            < self.percent
        }


def crash_strategy(iteration: int) -> Any:
    """The strategy of a crash-test iteration (all independent of time)."""
    kind = iteration % 3
    if kind == 0:
        return DefaultCleanupStrategy(max_entries_per_block=None, max_entries_per_module=None)
    if kind == 1:
        return DropFraction(salt=iteration, percent=2)
    return DefaultCleanupStrategy(
        max_entries_per_block=100 - 1 - iteration // 3, max_entries_per_module=None
    )


def crash_include_content(iteration: int) -> bool:
    return iteration % 2 == 1


def cleanup_child(path: str) -> None:
    """Say "ready", wait for "go <iteration>", run that cleanup, say "done ...".

    Run as a script by the crash test, which may SIGKILL it at any moment.
    """
    store = FsPersistentStore(path, object_grace_seconds=0, cleanup_on_exit=False)
    print("ready", flush=True)
    command = sys.stdin.readline().split()
    if not command or command[0] != "go":
        return
    iteration = int(command[1])
    started = time.perf_counter()
    report = store.cleanup(
        crash_strategy(iteration), include_content=crash_include_content(iteration)
    )
    elapsed = time.perf_counter() - started
    summary = {
        "seconds": elapsed,
        "dropped": len(report.dropped),
        "skipped": report.skipped,
        "objects_deleted": report.objects_deleted,
        "segments_deleted": report.segments_deleted,
    }
    print("done", json.dumps(summary), flush=True)


# -- 4. random work, random SIGKILL ----------------------------------------------------

CHAOS_LOCK_TIMEOUT = 5.0


def chaos_worker(path: str, seed: int) -> None:
    """Random puts, gets, cleanups (some with object GC) and reopens until killed.

    Run as a script by the chaos test, which SIGKILLs it at random moments.
    Writes `wrong <what>` at once for a wrong value, `skipped <why>` for a
    cleanup that found a lock busy for CHAOS_LOCK_TIMEOUT seconds, and a
    `stats <json>` line every 20 operations (flushed: a kill loses little).
    """
    warnings.simplefilter("ignore", StoreWarning)  # a killed writer's torn files warn
    rng = random.Random(seed)

    def open_store() -> FsPersistentStore:
        return FsPersistentStore(
            path,
            object_grace_seconds=0,
            lock_timeout=CHAOS_LOCK_TIMEOUT,
            refresh_interval=rng.choice((0, 0.05)),
            cleanup_on_exit=False,
        )

    store = open_store()
    stats = {"puts": 0, "gets": 0, "hits": 0, "cleanups": 0, "gc": 0, "reopens": 0}
    for operation in itertools.count():
        choice = rng.random()
        block, module = stress_key_space(rng)
        if choice < 0.45:
            store.put(Entry.of(ExecutionKey(block, module), stress_value(block, module)))
            stats["puts"] += 1
        if choice < 0.85:
            entry = store.get(ExecutionKey(block, module))
            stats["gets"] += 1
            if entry is not None:
                stats["hits"] += 1
                problem = mismatch(entry.variables, stress_value(block, module))
                if problem or (entry.key.block_id, entry.key.module_hash) != (block, module):
                    print(f"wrong {block}/{module}: {problem or entry.key}", flush=True)
        elif choice < 0.97:
            gc = rng.random() < 0.3
            report = store.cleanup(include_content=gc)
            stats["cleanups"] += 1
            stats["gc"] += gc
            for reason in report.skipped:
                print(f"skipped {reason}", flush=True)
        else:
            if rng.random() < 0.5:
                store.close()
            store = open_store()
            stats["reopens"] += 1
        if operation % 20 == 19:
            print("stats", json.dumps(stats), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["cleanup-child"]:
        cleanup_child(sys.argv[2])
    elif sys.argv[1:2] == ["chaos"]:
        chaos_worker(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(
            "usage: python -m workers.stress cleanup-child <store path> | chaos <store path> <seed>"
        )
