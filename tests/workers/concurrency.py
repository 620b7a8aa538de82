"""Functions run in other processes by the multi-process tests.

They live in an importable module (not in a test file) so that the "spawn"
start method can import them by name in a fresh interpreter. Every worker
reports problems through its exit code or a pipe, never by raising into the
parent: the parent asserts.
"""

from __future__ import annotations

import os
import time
from multiprocessing.connection import Connection
from typing import Any

from marimo_store import DefaultCleanupStrategy, Entry, ExecutionKey, FsPersistentStore

CONCURRENT_WORKERS = 4
PUTS_PER_WORKER = 500


def concurrent_key(worker: int, i: int) -> ExecutionKey:
    """The key of the `i`-th put of `worker` in the concurrency test."""
    return ExecutionKey(f"worker-{worker}", f"module-{i}")


def concurrent_value(worker: int, i: int) -> dict[str, Any]:
    """The variables stored under `concurrent_key(worker, i)`.

    `v` is unique to the key and crosses the inline threshold (512 bytes)
    as `i` grows, so some values are inline and some are object files;
    `shared` is the same for every worker at a given `i`, so the workers
    race to create the same object files.
    """
    return {
        "v": [i, worker, "x" * (i % 700)],
        "shared": "s" * (600 + i % 50),
    }


def put_many(path: str, worker: int, count: int, start: Any, pause: float = 0.0) -> None:
    """Wait at `start` (a Barrier shared with the other writers and the
    parent), then put `count` entries and close.

    `pause` (seconds, every 5 puts) only spreads the puts out so that a
    reader has time to read while they happen.
    """
    # Every entry must survive: the exit cleanup (which runs in each worker,
    # concurrently) keeps everything instead of 3 entries per block.
    keep_all = DefaultCleanupStrategy(max_entries_per_block=None, max_entries_per_module=None)
    store = FsPersistentStore(path, cleanup_strategy=keep_all)
    try:
        start.wait(60)
        for i in range(count):
            store.put(Entry.of(concurrent_key(worker, i), concurrent_value(worker, i)))
            if pause and i % 5 == 4:
                time.sleep(pause)
    finally:
        store.close()


def verify_all(path: str, workers: int, count: int, conn: Connection) -> None:
    """Open a fresh store and report how many entries load with the right values."""
    store = FsPersistentStore(path)
    try:
        listed = len(store.entries())
        correct = 0
        wrong: list[str] = []
        for worker in range(workers):
            for i in range(count):
                entry = store.get(concurrent_key(worker, i))
                if entry is not None and dict(entry.variables) == concurrent_value(worker, i):
                    correct += 1
                elif len(wrong) < 5:
                    wrong.append(f"{worker}/{i}: {entry!r}")
        conn.send({"listed": listed, "correct": correct, "wrong": wrong})
    finally:
        store.close()
        conn.close()


def serve_puts(path: str, options: dict[str, Any], conn: Connection) -> None:
    """Put whatever the parent sends, answering each put; `None` stops.

    One long-lived store instance, so successive puts append to the same
    segment (the reader must pick up records appended after it last read).
    """
    store = FsPersistentStore(path, **options)
    try:
        while True:
            message = conn.recv()
            if message is None:
                break
            block_id, module_hash, variables = message
            metadata = store.put(Entry.of(ExecutionKey(block_id, module_hash), variables))
            conn.send(metadata.created_at)
    finally:
        store.close()
        conn.send("closed")
        conn.close()


def put_with_inherited_store(
    store: FsPersistentStore, key: ExecutionKey, variables: dict[str, Any], conn: Connection
) -> None:
    """Run in a forked child: put with the parent's store instance as is."""
    try:
        store.put(Entry.of(key, variables))
        store.close()
        conn.send(("ok", os.getpid()))
    except BaseException as error:  # report to the parent instead of dying silently
        conn.send(("error", f"{type(error).__name__}: {error}"))
        raise
    finally:
        conn.close()


def read_and_put(
    store: FsPersistentStore,
    expected: dict[tuple[str, str], dict[str, Any]],
    own: tuple[str, str, dict[str, Any]],
    conn: Connection,
) -> None:
    """Run in a spawned child with a pickled store: check the parent's entries,
    then put one of our own. Sends what it found to the parent."""
    try:
        found: dict[tuple[str, str], Any] = {}
        for block_id, module_hash in expected:
            entry = store.get(ExecutionKey(block_id, module_hash))
            found[block_id, module_hash] = None if entry is None else dict(entry.variables)
        block_id, module_hash, variables = own
        created_at = store.put(Entry.of(ExecutionKey(block_id, module_hash), variables)).created_at
        store.close()
        conn.send(
            {
                "found": found,
                "created_at": created_at,
                "config": dict(store.config),
                "pid": os.getpid(),
            }
        )
    except BaseException as error:
        conn.send({"error": f"{type(error).__name__}: {error}"})
        raise
    finally:
        conn.close()
