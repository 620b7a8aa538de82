"""Object handles: small when pickled, loaded once per process, equal by content."""

from __future__ import annotations

import gc
import multiprocessing
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import STORE_KINDS, StoreFactory, open_store
from workers import objects as object_workers

from marimo_store import (
    FsPersistentStore,
    MemoryStore,
    NotFoundError,
    ObjectHandle,
    TieredStore,
)

SPAWN = multiprocessing.get_context("spawn")


def test_a_handle_to_100_mb_pickles_in_under_a_kilobyte(make_store: StoreFactory) -> None:
    store = make_store()
    array = np.arange(100 * 2**20 // 8, dtype=np.int64)  # 100 MiB
    handle = store.ref(array)
    data = pickle.dumps(handle)
    assert len(data) < 1024, len(data)
    assert array.nbytes == 100 * 2**20
    restored = pickle.loads(data)
    assert restored == handle
    loaded = restored.get()
    assert loaded.dtype == array.dtype
    assert loaded.shape == array.shape
    assert int(loaded[-1]) == int(array[-1])
    np.testing.assert_array_equal(loaded[:: 2**16], array[:: 2**16])


def test_get_returns_the_same_object_for_the_same_and_equal_handles(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    handle = store.ref(np.linspace(0, 1, 50_000))
    first = handle.get()
    assert handle.get() is first
    copy = pickle.loads(pickle.dumps(handle))
    assert copy is not handle
    assert copy.get() is first
    again = store.ref(np.linspace(0, 1, 50_000))  # equal bytes: an equal handle
    assert again == handle
    assert again.get() is first


def test_objects_that_cannot_be_weakly_referenced_are_shared_too(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    value = {"rows": list(range(1000)), "name": "table"}
    handle = store.ref(value)
    loaded = handle.get()
    assert loaded == value
    assert loaded is not value  # loaded from the store, not the caller's object
    copy = pickle.loads(pickle.dumps(handle))
    assert copy.get() is loaded


def test_a_loaded_object_outlives_its_handles_while_it_is_used(make_store: StoreFactory) -> None:
    store = make_store()
    data = pickle.dumps(store.ref(np.ones(30_000)))
    handle = pickle.loads(data)
    value = handle.get()
    del handle
    gc.collect()
    assert pickle.loads(data).get() is value  # alive elsewhere: found again
    del value
    gc.collect()
    reloaded = pickle.loads(data).get()  # gone: loaded afresh
    np.testing.assert_array_equal(reloaded, np.ones(30_000))


def test_handles_hash_and_compare_by_content(make_store: StoreFactory, tmp_path: Path) -> None:
    store = make_store()
    other_store = make_store(tmp_path / "other")
    a = store.ref([1, 2, 3])
    b = store.ref([1, 2, 3])
    c = store.ref([1, 2, 4])
    d = other_store.ref([1, 2, 3])
    assert a == b == d
    assert a != c
    assert hash(a) == hash(b) == hash(d)
    assert len({a, b, c, d}) == 2
    assert a != "not a handle"
    assert a.content_id != c.content_id
    assert "ObjectHandle(" in repr(a)


def test_ref_stores_each_object_once(make_store: StoreFactory) -> None:
    store = make_store()
    array = np.arange(200_000)
    handles = [store.ref(array) for _ in range(3)]
    assert len(set(handles)) == 1
    assert len(store.entries()) == 1
    assert store.names() == []  # handles are not named objects
    objects = {ref.id for ref in store.entries()[0].objects().values()}
    reopened = make_store()
    assert {ref.id for ref in reopened.entries()[0].objects().values()} == objects


def test_a_deleted_object_raises_not_found(make_store: StoreFactory) -> None:
    store = make_store()
    handle = store.ref("a value")
    store.delete_entries([store.entries()[0].key])
    fresh = pickle.loads(pickle.dumps(handle))
    with pytest.raises(NotFoundError, match="no longer holds"):
        fresh.get()


def test_concurrent_threads_get_one_object(make_store: StoreFactory) -> None:
    store = make_store()
    data = pickle.dumps(store.ref(np.zeros(500_000)))
    handles = [pickle.loads(data) for _ in range(8)]
    results: list[Any] = [None] * len(handles)
    start = threading.Barrier(len(handles))

    def resolve(i: int) -> None:
        start.wait()
        results[i] = handles[i].get()

    threads = [threading.Thread(target=resolve, args=(i,)) for i in range(len(handles))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result is results[0] for result in results)


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_every_store_makes_handles(kind: str, tmp_path: Path) -> None:
    store = open_store(kind, tmp_path)
    handle = store.ref({"k": np.arange(100_000)})
    assert isinstance(handle, ObjectHandle)
    np.testing.assert_array_equal(handle.get()["k"], np.arange(100_000))
    if kind == "memory":
        with pytest.raises(TypeError, match="FsPersistentStore"):
            pickle.dumps(handle)
    else:
        assert len(pickle.dumps(handle)) < 1024
    store.close()


def test_a_spawned_process_resolves_handles_once(make_store: StoreFactory) -> None:
    store = make_store()
    array = np.arange(1_000_000, dtype=np.float64)
    handle = store.ref(array)
    # Two separately pickled copies, as two tasks would receive them.
    first, second = pickle.loads(pickle.dumps(handle)), pickle.loads(pickle.dumps(handle))
    with SPAWN.Pool(1) as pool:
        seen = pool.apply(object_workers.resolve, (first, second))
    assert seen["sum"] == float(array.sum())
    assert seen["shape"] == array.shape
    assert seen["same_object"]
    assert seen["same_store"]  # the store is opened once per process


def test_a_tiered_store_handle_resolves_through_a_fresh_memory_tier(tmp_path: Path) -> None:
    memory = MemoryStore("16MB")
    store = TieredStore([memory, FsPersistentStore(tmp_path / "store")])
    handle = store.ref(np.arange(10_000))
    assert len(memory) == 1
    copy = pickle.loads(pickle.dumps(handle))
    assert isinstance(copy.store, TieredStore)
    copy_memory = copy.store.tiers[0]
    assert isinstance(copy_memory, MemoryStore)
    assert copy_memory is not memory
    assert copy_memory.max_bytes == memory.max_bytes
    assert len(copy_memory) == 0
    del copy  # the value it loads below must come through the tiers, not the registry
    gc.collect()
    fresh = pickle.loads(pickle.dumps(handle))
    np.testing.assert_array_equal(fresh.get(), np.arange(10_000))
    assert len(fresh.store.tiers[0]) == 1  # filled on the hit
    store.close()
