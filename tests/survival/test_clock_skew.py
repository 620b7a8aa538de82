"""Causal order, not wall clocks: a run written after another run was seen
comes after it, whatever the writers' clocks say (a hybrid logical clock,
docs/format.md §10.4), and keep-newest cleanup rules use that order.

Two writers whose clocks differ by a day (either way) take turns saving a
named object and putting runs of one computation, each seeing the other's
writes first: `load`, `get` and `history` always give the last one written,
and a cleanup keeps the newest in that order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import marimo_store._writer as writer_module
from marimo_store import DefaultCleanupStrategy, Entry, ExecutionKey, FsPersistentStore
from marimo_store._entry import now_ms as real_now_ms

DAY_MS = 86_400_000
KEY = ExecutionKey("train", "m1")


@pytest.fixture(autouse=True)
def _hermetic(home: Path) -> None:
    """Every test runs with its own empty HOME (see conftest.home)."""


@contextlib.contextmanager
def clock(offset_ms: int) -> Iterator[None]:
    """The writing machine's clock runs `offset_ms` ahead of the true time."""
    original = writer_module.now_ms
    writer_module.now_ms = lambda: real_now_ms() + offset_ms
    try:
        yield
    finally:
        writer_module.now_ms = original


@pytest.mark.parametrize(
    "skew", [DAY_MS, -DAY_MS], ids=["first writer a day ahead", "a day behind"]
)
def test_the_last_write_wins_whatever_the_clocks(tmp_path: Path, skew: int) -> None:
    root = tmp_path / "store"
    # (No background cleanup: a run a day old by its writer's clock would
    # start one at once, and this test runs the cleanup itself.)
    options = {"refresh_interval": 0, "cleanup_on_exit": False, "entry_merge_timeout_seconds": 1e9}
    writers = [(FsPersistentStore(root, **options), skew), (FsPersistentStore(root, **options), 0)]
    written = []
    for version in range(6):
        store, offset = writers[version % 2]
        with clock(offset):
            store.refresh()  # it has seen the other writer's last write
            store.save("model", {"version": version})
            written.append(store.put(Entry.of(KEY, {"version": version})).created_at)
        for reader, _ in writers:
            reader.refresh()
            assert reader.load("model") == {"version": version}
            entry = reader.get(KEY)
            assert entry is not None and entry.variables["version"] == version
    assert written == sorted(written) and len(set(written)) == 6
    fresh = FsPersistentStore(root, cleanup_on_exit=False)
    history = [m.created_at for m in fresh.history(KEY)]
    assert history == sorted(written, reverse=True)

    # Keep-newest cleanup rules go by the same order: the last two survive.
    report = fresh.cleanup(DefaultCleanupStrategy(max_entries_per_module=2))
    assert {d.key.created_at for d in report.dropped if d.key.block_id == "train"} == set(
        written[:4]
    )
    after = FsPersistentStore(root, cleanup_on_exit=False)
    assert after.load("model") == {"version": 5}
    entry = after.get(KEY)
    assert entry is not None and entry.variables["version"] == 5
    for store, _ in writers:
        store.close()
