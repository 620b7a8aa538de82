"""MemoryStore (in-process, LRU within a byte budget) and TieredStore."""

from __future__ import annotations

import copy
import pickle
import shutil
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from _layout import objects_dir

from marimo_store import (
    ConfigError,
    Entry,
    ExecutionKey,
    ExecutionKeyClash,
    FsPersistentStore,
    InvalidArgumentError,
    MemoryStore,
    NotFoundError,
    StoreWarning,
    TieredStore,
)

KB = 1000


def _array(kb: int, fill: float) -> np.ndarray:
    return np.full(kb * KB // 8, fill)


# -- MemoryStore -------------------------------------------------------------------


def test_pickling_a_memory_store_says_to_use_a_directory_store() -> None:
    store = MemoryStore()
    store.save("x", 1)
    with pytest.raises(TypeError, match=r"cannot be pickled.*use an FsPersistentStore"):
        pickle.dumps(store)
    with pytest.raises(TypeError, match="FsPersistentStore"):
        copy.copy(store)
    with pytest.raises(TypeError, match="FsPersistentStore"):
        pickle.dumps({"inside": [store]}, protocol=2)


def test_least_recently_used_entries_go_first() -> None:
    store = MemoryStore(max_bytes=1000 * KB)
    keys = [ExecutionKey("block", f"m{i}") for i in range(4)]
    store.put(Entry.of(keys[0], {"a": _array(400, 0)}))
    store.put(Entry.of(keys[1], {"a": _array(400, 1)}))
    assert store.get(keys[0]) is not None  # now keys[1] is the least recently used
    store.put(Entry.of(keys[2], {"a": _array(400, 2)}))
    assert store.get(keys[1]) is None
    assert store.get(keys[0]) is not None
    assert store.get(keys[2]) is not None
    assert 800 * KB <= store.nbytes <= 1000 * KB
    store.put(Entry.of(keys[3], {"a": _array(400, 3)}))
    assert [m.key.module_hash for m in store.entries()] == ["m2", "m3"]


def test_equal_objects_are_held_once() -> None:
    store = MemoryStore(max_bytes="2MB")
    shared = _array(600, 7)
    store.put(Entry.of(ExecutionKey("b", "one"), {"x": shared}))
    held = store.nbytes
    store.put(Entry.of(ExecutionKey("b", "two"), {"y": shared.copy()}))
    assert store.nbytes == held
    store.delete_entries([ExecutionKey("b", "one")])
    assert store.nbytes == held  # still used by "two"
    store.delete_entries([ExecutionKey("b", "two")])
    assert store.nbytes == 0
    assert len(store) == 0


def test_an_entry_larger_than_the_budget_is_not_kept() -> None:
    store = MemoryStore(max_bytes=100 * KB)
    store.save("small", 1)
    metadata = store.save("huge", _array(200, 1))
    assert metadata.content_size > 100 * KB
    assert not store.exists("huge")
    assert store.load("small") == 1


def test_values_are_copies_that_cannot_change_the_store() -> None:
    store = MemoryStore()
    value = {"rows": [1, 2, 3]}
    array = np.arange(100_000)
    store.save("table", value)
    store.save("array", array)
    value["rows"].append(4)  # after the put
    array[0] = 99
    loaded = store.load("table")
    assert loaded == {"rows": [1, 2, 3]}
    loaded["rows"].append(5)
    assert store.load("table") == {"rows": [1, 2, 3]}
    stored_array = store.load("array")
    assert stored_array[0] == 0
    stored_array[0] = 1  # writable, as the value that was saved ...
    assert store.load("array")[0] == 0  # ... and a private copy


def test_put_get_semantics_match_the_directory_store() -> None:
    store = MemoryStore()
    key = ExecutionKey("block", "module")
    first = store.put(Entry.of(key, {"x": 1, "y": "text"}))
    assert first.key.created_at is not None
    assert store.put(Entry.of(first.key, {"x": 1, "y": "text"})) == first  # no-op
    with pytest.raises(ExecutionKeyClash):
        store.put(Entry.of(first.key, {"x": 2}))
    second = store.put(Entry.of(key.at(first.created_at + 5), {"x": 2}))
    entry = store.get(key)
    assert entry is not None
    assert entry.key == second.key
    assert dict(entry.variables) == {"x": 2}
    older = store.get(first.key, exact_match_created_at=True)
    assert older is not None
    assert dict(older.variables) == {"x": 1, "y": "text"}
    assert store.get(key.at(first.created_at + 1), exact_match_created_at=True) is None
    with pytest.raises(InvalidArgumentError, match="needs a key with created_at"):
        store.get(key, exact_match_created_at=True)
    assert store.load_variable(first.key, "y") == "text"
    with pytest.raises(NotFoundError, match="has no variables 'z'"):
        store.load_variable(key, "z")
    assert [m.key for m in store.history(key)] == [second.key, first.key]
    assert [m.key for m in store] == [first.key, second.key]
    assert store.delete_entries([key]) == 2
    assert store.get(key) is None
    with pytest.raises(InvalidArgumentError):
        store.put("not an entry")  # type: ignore[arg-type]


def test_budget_is_validated() -> None:
    assert MemoryStore("1.5MiB").max_bytes == int(1.5 * 2**20)
    with pytest.raises(ConfigError, match="max_bytes"):
        MemoryStore("lots")
    with pytest.raises(ConfigError, match="max_bytes"):
        MemoryStore(-1)
    with pytest.raises(InvalidArgumentError, match="max_bytes"):
        MemoryStore(None)  # type: ignore[arg-type]


# -- TieredStore -------------------------------------------------------------------


Tiers = tuple[MemoryStore, FsPersistentStore, TieredStore]


@pytest.fixture
def tiers(tmp_path: Path) -> Tiers:
    memory = MemoryStore("8MB")
    disk = FsPersistentStore(tmp_path / "store")
    return memory, disk, TieredStore([memory, disk])


def test_writes_go_to_every_tier(tiers: Tiers, tmp_path: Path) -> None:
    memory, disk, store = tiers
    key = ExecutionKey("block", "module")
    metadata = store.put(Entry.of(key, {"a": _array(100, 1)}))
    saved = store.save("name", [1, 2])
    for tier in (memory, disk):
        assert [m.key for m in tier.entries()] == [metadata.key, saved.key]
    reopened = FsPersistentStore(tmp_path / "store")  # never memory-only
    assert reopened.load("name") == [1, 2]
    np.testing.assert_array_equal(reopened.load_variable(key, "a"), _array(100, 1))
    reopened.close()
    disk.close()


def test_a_hit_in_a_slower_tier_fills_the_faster_ones(tiers: Tiers, tmp_path: Path) -> None:
    memory, disk, store = tiers
    key = ExecutionKey("block", "module")
    stored = disk.put(Entry.of(key, {"a": _array(200, 3)}))  # the slow tier only
    assert len(memory) == 0
    entry = store.get(key)
    assert entry is not None
    np.testing.assert_array_equal(entry.variables["a"], _array(200, 3))
    assert [m.key for m in memory.entries()] == [stored.key]  # filled, same run
    # The next read comes from memory: it works with the files gone.
    shutil.rmtree(objects_dir(tmp_path / "store"))
    assert disk.get(key) is None
    again = store.get(key)
    assert again is not None
    np.testing.assert_array_equal(again.variables["a"], _array(200, 3))
    disk.close()


def test_the_newest_run_of_any_tier_wins(tiers: Tiers, tmp_path: Path) -> None:
    memory, disk, store = tiers
    first = store.save("status", "old")
    assert memory.load("status") == "old"
    while time.time_ns() // 1_000_000 <= first.created_at:
        time.sleep(0.001)
    elsewhere = FsPersistentStore(tmp_path / "store")  # another process, say
    elsewhere.save("status", "new")
    elsewhere.close()
    disk.refresh()
    assert store.load("status") == "new"
    assert memory.load("status") == "new"  # filled
    assert store.load("status", at=first.created_at) == "old"
    assert len(store.info("status").versions) == 2
    assert store.delete("status") == 2
    assert not memory.exists("status")
    assert not disk.exists("status")
    disk.close()


def test_a_tier_that_cannot_take_the_fill_costs_a_warning(tmp_path: Path) -> None:
    disk = FsPersistentStore(tmp_path / "store")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the faster store's parent directory would go")
    # (A store on the file itself is refused at construction: test_store_directory.py.)
    store = TieredStore([FsPersistentStore(blocked / "store"), disk])
    disk.save("x", [1, 2, 3])
    with pytest.warns(StoreWarning, match="could not copy"):
        assert store.load("x") == [1, 2, 3]
    disk.close()


def test_tiers_are_validated() -> None:
    with pytest.raises(InvalidArgumentError, match="at least one tier"):
        TieredStore([])
    with pytest.raises(InvalidArgumentError, match=r"cannot be a tier.*history"):
        TieredStore([MemoryStore(), object()])  # type: ignore[list-item]


def test_a_value_that_no_longer_loads_is_a_miss_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("vanishing_module")
    exec("class Point:\n    def __init__(self, x):\n        self.x = x\n", module.__dict__)
    module.Point.__module__ = "vanishing_module"
    monkeypatch.setitem(sys.modules, "vanishing_module", module)
    store = MemoryStore()
    store.save("point", module.Point(3))
    assert store.load("point").x == 3
    del module.Point  # the class moved away: the pickle no longer loads
    with pytest.warns(StoreWarning, match="cannot load a value of entry .* \\(memory\\)"):
        assert store.get(store.info("point").latest.key) is None
    with pytest.raises(NotFoundError), pytest.warns(StoreWarning):
        store.load("point")


@pytest.mark.parametrize("exact", [False, True], ids=["newest", "exact"])
def test_a_lookup_by_something_not_a_key_is_refused(exact: bool) -> None:
    for store in (MemoryStore(), TieredStore([MemoryStore(), MemoryStore()])):
        with pytest.raises(InvalidArgumentError, match="expected an ExecutionKey, got str"):
            store.get("not a key", exact_match_created_at=exact)  # type: ignore[arg-type]
