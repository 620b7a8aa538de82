"""`LegacyPersistentStore`, and the surface it shares with `FsPersistentStore`
(put, get, load_variable, entries, delete_entries, refresh)."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from marimo_store import (
    Entry,
    ExecutionKey,
    ExecutionKeyClash,
    FsPersistentStore,
    LegacyPersistentStore,
    NotFoundError,
    NotSupportedError,
    StoreError,
    StoreWarning,
)

Store = FsPersistentStore | LegacyPersistentStore


@pytest.fixture(params=["fs", "legacy"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store: Store = (
        FsPersistentStore(tmp_path / "fs", refresh_interval=0)
        if request.param == "fs"
        else LegacyPersistentStore(tmp_path / "legacy")
    )
    yield store
    store.close()


def test_the_shared_surface(any_store: Store) -> None:
    key = ExecutionKey("block", "computation")
    array = np.arange(100_000, dtype=np.float64)
    metadata = any_store.put(
        Entry.of(key, {"a": array, "b": {"k": [1, 2]}}, user_metadata={"u": 1})
    )
    assert metadata.created_at is not None
    entry = any_store.get(key)
    assert entry is not None and entry.metadata == metadata
    assert np.array_equal(entry.variables["a"], array)
    assert entry.variables["b"] == {"k": [1, 2]}
    assert entry.user_metadata == {"u": 1}
    assert any_store.load_variable(key, "b") == {"k": [1, 2]}
    with pytest.raises(NotFoundError, match="no variables 'c'"):
        any_store.load_variable(key, "c")
    assert any_store.get(key.at(metadata.created_at), exact_match_created_at=True) is not None
    assert any_store.get(key.at(metadata.created_at - 1)) is None  # stored after that
    assert any_store.get(ExecutionKey("block", "other")) is None
    assert [m.key for m in any_store.entries()] == [metadata.key]
    # The same key, contents and created_at again: a no-op; other contents: a clash.
    assert any_store.put(Entry.of(metadata.key, {"a": array, "b": {"k": [1, 2]}})) == metadata
    with pytest.raises(ExecutionKeyClash):
        any_store.put(Entry.of(metadata.key, {"a": 1}))
    assert any_store.delete_entries([ExecutionKey("block", "nothing")]) == 0
    assert any_store.delete_entries([key]) == 1
    assert any_store.get(key) is None
    assert any_store.entries() == []
    any_store.refresh()


def test_json_values(any_store: Store) -> None:
    key = ExecutionKey("json", "x")
    any_store.put(Entry.of(key, {"v": {"a": [1, "b", None]}}, format="json"))
    entry = any_store.get(key)
    assert entry is not None and entry.variables["v"] == {"a": [1, "b", None]}
    assert entry.metadata is not None and entry.metadata.variables["v"].format == "json"


def test_deletions_reach_other_instances(tmp_path: Path) -> None:
    writer = FsPersistentStore(tmp_path, refresh_interval=3600)
    reader = FsPersistentStore(tmp_path, refresh_interval=3600)
    first = writer.put(Entry.of(ExecutionKey("b", "m"), {"v": 1}))
    writer.put(Entry.of(ExecutionKey("b", "m"), {"v": 2}))  # a second run
    assert reader.get(ExecutionKey("b", "m")) is not None
    assert writer.delete_entries([first.key]) == 1  # one run
    newest = writer.get(ExecutionKey("b", "m"))
    assert newest is not None and newest.variables["v"] == 2
    reader.refresh()  # refresh_interval would otherwise hide the new records
    assert reader.get(first.key, exact_match_created_at=True) is None
    assert writer.delete_entries([ExecutionKey("b", "m")]) == 1  # every remaining run
    writer.cleanup()
    assert FsPersistentStore(tmp_path).entries() == []
    writer.close()
    reader.close()


def test_a_new_run_replaces_the_file_of_its_computation(tmp_path: Path) -> None:
    store = LegacyPersistentStore(tmp_path)
    key = ExecutionKey("block", "m")
    first = store.put(Entry.of(key, {"v": 1}))
    second = store.put(Entry.of(key, {"v": 2}))
    assert second.created_at > first.created_at
    entry = store.get(key)
    assert entry is not None and entry.variables["v"] == 2
    assert store.get(first.key, exact_match_created_at=True) is None  # no history
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.pickle")] == [
        "block/m.pickle"
    ]


def test_block_names_never_leave_the_folder(tmp_path: Path) -> None:
    store = LegacyPersistentStore(tmp_path / "cache")
    for block in ("../escape", "a/b", ".hidden", "h-looks-hashed", "x" * 100):
        key = ExecutionKey(block, "../m")
        store.put(Entry.of(key, {"v": block}))
        entry = store.get(key)
        assert entry is not None and entry.variables["v"] == block
    files = list(tmp_path.rglob("*.pickle"))
    assert len(files) == 5
    assert all(path.parent.parent == tmp_path / "cache" for path in files)


class MarimoCache:
    """Stands for marimo's own cache objects, which share the folder."""


def test_marimos_own_files_are_not_entries(tmp_path: Path) -> None:
    store = LegacyPersistentStore(tmp_path)
    (tmp_path / "cell_1").mkdir()
    (tmp_path / "cell_1" / "P_abc.pickle").write_bytes(pickle.dumps(MarimoCache()))
    (tmp_path / "cell_1" / "garbage.pickle").write_bytes(b"\x00\x01")
    (tmp_path / "stray.pickle").write_bytes(b"")
    store.put(Entry.of(ExecutionKey("ours", "m"), {"v": 1}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [m.key.block_id for m in store.entries()] == ["ours"]


def _flip_middle_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


@pytest.mark.parametrize(
    ("damage", "warning"),
    [
        (lambda data: data[:-3], "has .* bytes, its header says"),  # truncated
        (_flip_middle_byte, "does not match its hash"),  # in the array: it would still load
        (lambda data: b"not a pickle at all", "not a readable marimo_store cache file"),
    ],
)
def test_a_damaged_file_is_a_miss_and_a_warning(
    tmp_path: Path, damage: Callable[[bytes], bytes], warning: str
) -> None:
    store = LegacyPersistentStore(tmp_path)
    key = ExecutionKey("block", "m")
    store.put(Entry.of(key, {"v": np.arange(100_000)}))  # an out-of-band buffer
    path = tmp_path / "block" / "m.pickle"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(StoreWarning, match=warning):
        assert store.get(key) is None
    with pytest.warns(StoreWarning, match=warning), pytest.raises(NotFoundError):
        store.load_variable(key, "v")


def test_cleanup_is_not_supported(tmp_path: Path) -> None:
    store = LegacyPersistentStore(tmp_path)
    with pytest.raises(NotSupportedError, match="no cleanup") as caught:
        store.cleanup()
    assert isinstance(caught.value, StoreError)
    assert "FsPersistentStore" in str(caught.value)


def test_a_legacy_store_pickles_as_its_path(tmp_path: Path) -> None:
    store = LegacyPersistentStore(tmp_path)
    copy: Any = pickle.loads(pickle.dumps(store))
    assert copy == store and hash(copy) == hash(store) and copy is not store
    assert repr(copy) == f"LegacyPersistentStore({str(tmp_path)!r})"
