"""`delete_entries` (tombstone records in the log) and `lookup` (metadata of
the run a `get` would load, without loading it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _layout import object_files, object_path
from conftest import StoreFactory

import marimo_store._writer
from marimo_store import Entry, ExecutionKey, InvalidArgumentError

KEY = ExecutionKey("block", "computation")
BIG = b"x" * 100_000  # a file of its own


def put_runs(make_store: StoreFactory, count: int) -> list[ExecutionKey]:
    writer = make_store()
    runs = [writer.put(Entry.of(KEY, {"v": i, "big": BIG + bytes([i])})).key for i in range(count)]
    writer.close()
    return runs


def test_delete_one_run_leaves_the_others(make_store: StoreFactory) -> None:
    runs = put_runs(make_store, 3)
    store = make_store()
    assert store.delete_entries([runs[2]]) == 1
    entry = store.get(KEY)
    assert entry is not None
    assert entry.key == runs[1]
    assert [m.key for m in make_store().entries()] == runs[:2]


def test_delete_without_created_at_deletes_every_run(make_store: StoreFactory) -> None:
    put_runs(make_store, 3)
    other = make_store().put(Entry.of(ExecutionKey("block", "other"), {"v": 1})).key
    store = make_store()
    assert store.delete_entries([KEY]) == 3
    assert store.get(KEY) is None
    assert store.lookup(KEY) is None
    assert store.delete_entries([KEY]) == 0
    # Another process (here: another instance) sees the tombstones in the log.
    assert [m.key for m in make_store().entries()] == [other]


def test_deleted_entries_stay_deleted_through_cleanup_and_their_objects_go(
    make_store: StoreFactory, store_path: Path
) -> None:
    put_runs(make_store, 2)
    store = make_store(object_grace_seconds=0)
    assert len(object_files(store_path)) == 2
    store.delete_entries([KEY])
    report = store.cleanup(include_content=True)
    assert report.objects_deleted == 2
    assert object_files(store_path) == []
    assert make_store().get(KEY) is None


def test_a_put_after_a_delete_is_a_new_live_run(make_store: StoreFactory) -> None:
    put_runs(make_store, 1)
    store = make_store()
    store.delete_entries([KEY])
    stored = store.put(Entry.of(KEY, {"v": "again"}))
    assert store.load_variable(KEY, "v") == "again"
    assert make_store().load_variable(KEY, "v") == "again"
    assert stored.key in {m.key for m in make_store().entries()}


def test_a_put_in_the_millisecond_of_a_deleted_run_gets_a_new_time(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(marimo_store._writer, "now_ms", lambda: 1_700_000_000_000)
    store = make_store()
    first = store.put(Entry.of(KEY, {"v": 1})).key
    store.delete_entries([KEY])
    second = store.put(Entry.of(KEY, {"v": 1})).key
    assert first.created_at == 1_700_000_000_000
    assert second.created_at == 1_700_000_000_001
    assert make_store().load_variable(KEY, "v") == 1


def test_delete_entries_takes_only_execution_keys(make_store: StoreFactory) -> None:
    with pytest.raises(InvalidArgumentError, match="takes ExecutionKeys, got str"):
        make_store().delete_entries(["block"])  # type: ignore[list-item]


def test_lookup_finds_the_newest_complete_run_without_loading(
    make_store: StoreFactory, store_path: Path
) -> None:
    runs = put_runs(make_store, 2)
    store = make_store()
    found = store.lookup(KEY)
    assert found is not None
    assert found.key == runs[1]
    assert store.lookup(KEY.at(runs[0].created_at or 0)) == store.lookup(runs[0])
    # The newest run's object is gone: lookup moves to the older run.
    newest_big = found.variables["big"]
    object_path(store_path, newest_big.id).unlink()
    older = store.lookup(KEY)
    assert older is not None
    assert older.key == runs[0]
    assert store.lookup(ExecutionKey("block", "unknown")) is None


def test_lookup_records_no_access(make_store: StoreFactory) -> None:
    put_runs(make_store, 1)
    store = make_store()
    assert store.lookup(KEY) is not None
    store.close()
    (metadata,) = make_store().entries()
    assert metadata.last_access is None
