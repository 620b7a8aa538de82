"""One `Store` protocol: every store implements it, and everything that takes
a store takes any of them (docs/objects.md: "works on every store")."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import marimo_store
from marimo_store import (
    App,
    Entry,
    ExecutionKey,
    FsPersistentStore,
    InvalidArgumentError,
    LegacyPersistentStore,
    MemoryStore,
    NotFoundError,
    Store,
    TieredStore,
    persistent_cache,
)
from marimo_store._named import STORE_METHODS

Factory = Callable[[Path], Store]
STORES: dict[str, Factory] = {
    "fs": lambda root: FsPersistentStore(root / "store", cleanup_on_exit=False),
    "memory": lambda root: MemoryStore(),
    "tiered": lambda root: TieredStore(
        [MemoryStore(), FsPersistentStore(root / "store", cleanup_on_exit=False)]
    ),
    "legacy": lambda root: LegacyPersistentStore(root / "cache"),
}


@pytest.fixture(params=list(STORES))
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store = STORES[request.param](tmp_path)
    yield store
    store.close()


def test_the_protocol_is_exported_and_lists_the_methods_the_library_checks() -> None:
    assert marimo_store.Store is Store
    members = {
        name
        for name, member in vars(Store).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }
    assert members == set(STORE_METHODS)


def test_every_store_implements_it(any_store: Store) -> None:
    assert isinstance(any_store, Store)


def test_what_is_not_a_store_is_refused_with_what_it_lacks() -> None:
    class HalfStore:
        def get(self, key: ExecutionKey) -> None:
            return None

    assert not isinstance(HalfStore(), Store)
    with pytest.raises(InvalidArgumentError, match=r"must be a Store .*has no put, history"):
        persistent_cache(store=HalfStore())  # type: ignore[call-overload]
    with pytest.raises(InvalidArgumentError, match=r"marimo_store\.Store protocol"):
        App(HalfStore())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="no put, history"):
        TieredStore([HalfStore()])  # type: ignore[list-item]


def test_persistent_cache_and_app_take_every_store(any_store: Store) -> None:
    @persistent_cache(store=any_store)
    def square(x: int) -> int:
        return x * x

    assert [square(3), square(3), square(4)] == [9, 9, 16]
    info = square.cache_info()
    assert (info.hits, info.misses, info.entries) == (1, 2, 2)
    assert square.explain(3).hit and not square.explain(5).hit
    assert square.cache_clear() == 2
    assert square(3) == 9
    assert square.cache_info().misses == 1  # cleared: computed again

    app = App(any_store)

    @app.persistent_cache(single_flight=True)
    def cube(x: int) -> int:
        return x**3

    assert [cube(2), cube(2)] == [8, 8]
    assert (cube.cache_info().hits, cube.cache_info().misses) == (1, 1)


def test_named_objects_and_handles_work_on_every_store(any_store: Store) -> None:
    table = {"rows": [1, 2, 3]}
    any_store.save("table", table, metadata={"source": "test"})  # type: ignore[attr-defined]
    assert any_store.load("table") == table  # type: ignore[attr-defined]
    assert any_store.names() == ["table"]  # type: ignore[attr-defined]
    assert any_store.exists("table")  # type: ignore[attr-defined]
    assert any_store.info("table").user_metadata == {"source": "test"}  # type: ignore[attr-defined]
    array = np.arange(10_000.0)
    handle = any_store.ref(array)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(handle.get(), array)
    assert any_store.delete("table") >= 1  # type: ignore[attr-defined]
    with pytest.raises(NotFoundError):
        any_store.load("table")  # type: ignore[attr-defined]


def test_entries_round_trip_on_every_store(any_store: Store) -> None:
    metadata = any_store.put(Entry.of(ExecutionKey("block", "m"), {"x": 1, "y": "text"}))
    entry = any_store.get(metadata.key)
    assert entry is not None and dict(entry.variables) == {"x": 1, "y": "text"}
    assert any_store.load_variable(metadata.key, "y") == "text"
    assert [m.key for m in any_store.history(metadata.key)] == [metadata.key]
    assert metadata.key in {m.key for m in any_store.entries()}
    any_store.refresh()
    assert any_store.delete_entries([metadata.key]) == 1
    assert any_store.get(metadata.key) is None
