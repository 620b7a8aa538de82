"""Assertions about a store directory shared by the stress, crash, fault and sync tests.

They look at the files (what a user or a sync tool would see) and read
through the public API only.
"""

from __future__ import annotations

import _pickle
import contextlib
import pickle
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from _layout import object_path
from workers import stress as stress_workers

from marimo_store import EntryMetadata, FsPersistentStore


def refuse_unpickling(monkeypatch: Any, message: str) -> None:
    """Make every unpickling in this process fail with `AssertionError(message)`:
    through `pickle` and through `_pickle`, the C unpickler readers call."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(message)

    for module in (pickle, _pickle):
        monkeypatch.setattr(module, "loads", refuse)
        monkeypatch.setattr(module, "load", refuse)
        monkeypatch.setattr(module, "Unpickler", refuse)


@contextlib.contextmanager
def no_store_warnings() -> Iterator[None]:
    """Fail if the block emits any StoreWarning (damage where there is none)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    problems = stress_workers.store_warnings(caught)
    assert not problems, problems


def referenced_objects(entries: Iterable[EntryMetadata]) -> dict[str, int]:
    """Id -> size of every non-inline object the entries need."""
    return {
        object_id: ref.size
        for metadata in entries
        for object_id, ref in metadata.objects().items()
        if not ref.inline and ref.size > 0
    }


def missing_objects(root: Path, entries: Iterable[EntryMetadata]) -> list[str]:
    """Objects referenced by `entries` that are absent or have the wrong size."""
    problems = []
    for object_id, size in referenced_objects(entries).items():
        path = object_path(root, object_id)
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"{object_id}: missing")
            continue
        if actual != size:
            problems.append(f"{object_id}: {actual} bytes, expected {size}")
    return problems


def check_every_entry_loads(
    root: Path, store: FsPersistentStore, value_of: Callable[[str, str], dict[str, Any]]
) -> list[EntryMetadata]:
    """Every listed entry has its objects and loads (exactly) with its value."""
    entries = store.entries()
    assert not missing_objects(root, entries)
    for metadata in entries:
        key = metadata.key
        entry = store.get(key, exact_match_created_at=True)
        problem = stress_workers.mismatch(
            None if entry is None else entry.variables, value_of(key.block_id, key.module_hash)
        )
        assert problem is None, (key, problem)
    return entries
