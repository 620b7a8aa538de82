"""Shared fixtures: every test gets its own store directory under tmp_path."""

from __future__ import annotations

import os
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


def pytest_addoption(parser: pytest.Parser) -> None:
    """Sizes of the long randomised tests: small by default (CI), larger on request."""
    parser.addoption(
        "--schedules",
        type=int,
        default=int(os.environ.get("MARIMO_STORE_SYNC_SCHEDULES", "300")),
        help="sync simulator schedules with replicas in this process (tests/sync)",
    )
    parser.addoption(
        "--schedule-seed",
        type=int,
        default=int(os.environ.get("MARIMO_STORE_SYNC_SEED", "0")),
        help="the first schedule's seed (later ones count up from it)",
    )
    parser.addoption(
        "--process-schedules",
        type=int,
        default=int(os.environ.get("MARIMO_STORE_SYNC_PROCESS_SCHEDULES", "10")),
        help="sync simulator schedules with each replica in a worker process",
    )
    parser.addoption(
        "--mutations",
        type=int,
        default=int(os.environ.get("MARIMO_STORE_FUZZ_MUTATIONS", "600")),
        help="mutations of the corruption fuzzer (tests/test_fuzz.py)",
    )
