"""A cleanup's work follows what changed since the last snapshot.

The records of entries a snapshot holds unchanged are copied into the next
snapshot byte for byte, only new or changed entries are encoded, and the
cyclic garbage collector is paused while the merge runs (and restored
after, whatever happens).
"""

from __future__ import annotations

import gc
import shutil
import struct
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import StoreFactory

import marimo_store._snapshot as snapshot_module
from marimo_store import DefaultCleanupStrategy, Entry, EntryMetadata, ExecutionKey
from marimo_store._format.records import encode_entry

FRAME = struct.Struct("<IQ")  # u32 length | u64 xxh3-64 checksum, little endian
FOOTER = struct.Struct("<QQ8s")  # tombstones frame offset, table frame offset, magic
ROW = struct.Struct("<QQ")  # computation hash, offset of the entry's frame
KEEP_ALL = DefaultCleanupStrategy(max_entries_per_block=None, max_entries_per_module=None)


def records(path: Path) -> dict[str, bytes]:
    """module_hash -> the entry's frame as the snapshot file holds it,
    read through the key table (docs/format.md)."""
    data = path.read_bytes()
    _, table_at, _ = FOOTER.unpack_from(data, len(data) - FOOTER.size)
    length, _ = FRAME.unpack_from(data, table_at)
    table = data[table_at + FRAME.size : table_at + FRAME.size + length]
    found = {}
    for row in range(len(table) // ROW.size):
        offset = ROW.unpack_from(table, row * ROW.size)[1]
        size = FRAME.unpack_from(data, offset)[0]
        record = data[offset : offset + FRAME.size + size]
        found[msgpack.unpackb(record[FRAME.size :])["k"][1]] = record
    return found


def the_snapshot(root: Path) -> Path:
    (path,) = (root / "snapshots").glob("*.snap")
    return path


@pytest.fixture
def encodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ExecutionKey]]:
    """The keys of the entries snapshots encode (rather than copy), in order."""
    encoded: list[ExecutionKey] = []

    def counting(stored: Any, context: Any) -> dict[str, Any]:
        encoded.append(stored.metadata.key)
        return encode_entry(stored, context)

    monkeypatch.setattr(snapshot_module, "encode_entry", counting)
    yield encoded


def test_unchanged_records_are_copied_and_only_new_or_changed_ones_encoded(
    make_store: StoreFactory, store_path: Path, encodes: list[ExecutionKey]
) -> None:
    store = make_store(cleanup_on_exit=False)
    old = [store.put(Entry.of(ExecutionKey("b", f"old{i}"), {"v": i})).key for i in range(20)]
    store.cleanup(KEEP_ALL)
    assert sorted(encodes, key=str) == sorted(old, key=str)
    before = records(the_snapshot(store_path))
    encodes.clear()

    new = [store.put(Entry.of(ExecutionKey("b", f"new{i}"), {"v": i})).key for i in range(3)]
    reader = make_store(cleanup_on_exit=False)
    assert reader.get(old[5]) is not None  # an access: its last access and hits change
    reader.close()  # writes its access record
    report = store.cleanup(KEEP_ALL)

    assert report.entries_kept == 23
    assert sorted(encodes, key=str) == sorted([*new, old[5]], key=str)
    after = records(the_snapshot(store_path))
    assert set(after) == set(before) | {key.module_hash for key in new}
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {"old5"}
    assert msgpack.unpackb(after["old5"][FRAME.size :])["hc"] == 1
    fresh = make_store(cleanup_on_exit=False)
    for i, key in enumerate(old):
        entry = fresh.get(key, exact_match_created_at=True)
        assert entry is not None and entry.variables["v"] == i


def test_a_duplicate_from_the_log_that_wins_is_encoded_not_the_snapshot_record(
    make_store: StoreFactory, store_path: Path, tmp_path: Path, encodes: list[ExecutionKey]
) -> None:
    """A run put again (same key, other contents) after the snapshot: the
    merged state keeps the format's winner (the larger contents), and the
    snapshot must hold it, never a stale copy of the snapshot's record."""
    store = make_store(cleanup_on_exit=False)
    key = store.put(Entry.of(ExecutionKey("b", "m"), {"v": 1})).key
    store.cleanup(KEEP_ALL)
    encodes.clear()
    other = make_store(tmp_path / "other", cleanup_on_exit=False)
    other.put(Entry.of(key, {"v": 1, "more": "x" * 100}))  # as another machine did
    other.close()
    for segment in (tmp_path / "other" / "log").glob("*.log"):  # a sync tool delivers it
        assert not (store_path / "log" / segment.name).exists()
        shutil.copy2(segment, store_path / "log" / segment.name)
    store.cleanup(KEEP_ALL)
    assert encodes == [key]
    record = msgpack.unpackb(records(the_snapshot(store_path))["m"][FRAME.size :])
    assert set(record["c"]["variables"]) == {"v", "more"}
    entry = make_store(cleanup_on_exit=False).get(key, exact_match_created_at=True)
    assert entry is not None and dict(entry.variables) == {"v": 1, "more": "x" * 100}


class _Recording:
    """A strategy that keeps everything and records whether the cyclic
    garbage collector ran while it was called (inside the merge)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.collector_enabled: list[bool] = []
        self.fail = fail

    def __call__(self, entries: Collection[EntryMetadata], now: int) -> Mapping[ExecutionKey, str]:
        self.collector_enabled.append(gc.isenabled())
        if self.fail:
            raise RuntimeError("a strategy that fails")
        return {}


@pytest.mark.parametrize("enabled_before", [True, False])
def test_the_cyclic_collector_is_paused_during_a_cleanup_and_restored(
    make_store: StoreFactory, enabled_before: bool
) -> None:
    store = make_store(cleanup_on_exit=False)
    store.put(Entry.of(ExecutionKey("b", "m"), {"v": 1}))
    strategy, failing = _Recording(), _Recording(fail=True)
    was = gc.isenabled()
    try:
        if not enabled_before:
            gc.disable()
        store.cleanup(strategy)
        assert gc.isenabled() is enabled_before
        with pytest.raises(RuntimeError, match="a strategy that fails"):
            store.cleanup(failing)
        assert gc.isenabled() is enabled_before
    finally:
        if was:
            gc.enable()
    assert strategy.collector_enabled == [False]
    assert failing.collector_enabled == [False]
