"""Shared fixtures: every test gets its own store directory under tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from marimo_store import FsPersistentStore

StoreFactory = Callable[..., FsPersistentStore]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Where the test's store lives (not created until the first put)."""
    return tmp_path / "store"


@pytest.fixture
def make_store(store_path: Path) -> Iterator[StoreFactory]:
    """Open stores on `store_path` (or another path); all are closed afterwards."""
    opened: list[FsPersistentStore] = []

    def make(path: Path | None = None, **options: Any) -> FsPersistentStore:
        store = FsPersistentStore(path or store_path, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> FsPersistentStore:
    """A store with default options."""
    return make_store()
