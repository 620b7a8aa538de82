"""Access records: how hits become recency for LRU cleanup.

A hit writes nothing at once: access records wait in memory and are
appended in one batch with the next put, at `close()`, at `cleanup()` or at
interpreter exit. These tests look at the files, not at internals.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from _layout import log_dir, snapshots_dir
from conftest import StoreFactory

from marimo_store import Entry, ExecutionKey

SUBPROCESS_TIMEOUT = 60


def log_state(store_path: Path) -> dict[str, int]:
    """Every log segment's name and size."""
    return {p.name: p.stat().st_size for p in sorted(log_dir(store_path).iterdir())}


def put_three(make_store: StoreFactory) -> list[ExecutionKey]:
    writer = make_store()
    keys = [ExecutionKey(f"block-{i}", f"m{i}") for i in range(3)]
    stored = [writer.put(Entry.of(key, {"v": i})).key for i, key in enumerate(keys)]
    writer.close()
    return stored


def last_access(make_store: StoreFactory, key: ExecutionKey) -> int | None:
    (metadata,) = [m for m in make_store().entries() if m.key == key]
    return metadata.last_access


def test_a_hit_writes_nothing_until_close(make_store: StoreFactory, store_path: Path) -> None:
    keys = put_three(make_store)
    before = log_state(store_path)
    reader = make_store()
    started = time.time_ns() // 1_000_000
    assert reader.get(keys[0]) is not None
    assert reader.load_variable(keys[1], "v") == 1
    assert log_state(store_path) == before, "a hit must not create or grow a segment"
    assert last_access(make_store, keys[0]) is None

    reader.close()
    assert set(log_state(store_path)) > set(before), "close() writes the batch"
    for key in keys[:2]:
        seen = last_access(make_store, key)
        assert seen is not None
        assert seen >= started
    assert last_access(make_store, keys[2]) is None


def test_a_store_only_opened_and_closed_writes_nothing(
    make_store: StoreFactory, store_path: Path
) -> None:
    keys = put_three(make_store)
    before = log_state(store_path)
    reader = make_store()
    assert reader.lookup(keys[0]) is not None  # records no access
    reader.close()
    assert log_state(store_path) == before


def test_waiting_accesses_ride_along_with_the_next_put(
    make_store: StoreFactory, store_path: Path
) -> None:
    keys = put_three(make_store)
    store = make_store()
    assert store.get(keys[2]) is not None
    assert last_access(make_store, keys[2]) is None
    store.put(Entry.of(ExecutionKey("other", "m"), {"v": "new"}))
    # Not closed: the put's own write carried the access record.
    assert last_access(make_store, keys[2]) is not None


def test_a_reading_process_writes_its_accesses_at_exit(
    make_store: StoreFactory, store_path: Path
) -> None:
    keys = put_three(make_store)
    script = textwrap.dedent(
        f"""
        from marimo_store import ExecutionKey, FsPersistentStore
        store = FsPersistentStore({str(store_path)!r})
        key = ExecutionKey({keys[1].block_id!r}, {keys[1].module_hash!r})
        assert store.get(key).variables["v"] == 1
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=SUBPROCESS_TIMEOUT)
    assert last_access(make_store, keys[1]) is not None
    assert last_access(make_store, keys[0]) is None


def test_a_dry_run_cleanup_writes_nothing(make_store: StoreFactory, store_path: Path) -> None:
    keys = put_three(make_store)
    before = log_state(store_path)
    store = make_store()
    assert store.get(keys[0]) is not None
    store.cleanup(dry_run=True)
    assert log_state(store_path) == before
    store.cleanup()
    assert last_access(make_store, keys[0]) is not None


def test_segments_that_readers_leave_are_compacted_at_exit(
    make_store: StoreFactory, store_path: Path
) -> None:
    """Each reading instance leaves one small segment; once more than 64 pile
    up, the next instance to exit cleans up, though it stored nothing."""
    keys = put_three(make_store)
    for _ in range(70):
        reader = make_store()
        assert reader.get(keys[0]) is not None
        reader.close()
    assert len(log_state(store_path)) > 64
    assert not snapshots_dir(store_path).exists()
    script = textwrap.dedent(
        f"""
        from marimo_store import ExecutionKey, FsPersistentStore
        store = FsPersistentStore({str(store_path)!r})
        assert store.get(ExecutionKey({keys[2].block_id!r}, {keys[2].module_hash!r})) is not None
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=SUBPROCESS_TIMEOUT)
    assert len(list(snapshots_dir(store_path).iterdir())) == 1
    assert len(log_state(store_path)) <= 1  # at most the exiting reader's own segment
    store = make_store()
    assert {m.key for m in store.entries()} == set(keys)
    assert last_access(make_store, keys[0]) is not None
    assert last_access(make_store, keys[2]) is not None
