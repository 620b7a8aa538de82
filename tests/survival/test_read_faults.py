"""Read-side faults: every read `get`, `load`, a cached call and iteration
make fails in turn, and none of them raises a raw `OSError`.

For each read operation k (stat, open, fstat, read, mmap, listing, routed
through `marimo_store._fs`) of each call on a fresh instance, the k-th read
fails with EACCES, EIO, ENOENT (a file deleted in between) or EISDIR (a
directory where a file belongs), once or from then on, or the file it is
about is replaced by another of the same size (a sync tool delivering a
newer copy mid-read). Each time the call returns the right value or a miss
(`NotFoundError` for `load`), warns at most once (once per file that
keeps failing), warns when an error other
than ENOENT made it a miss, and the files are all still there: a failed
read never deletes anything.
"""

from __future__ import annotations

import errno
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _faults import READ_OPERATIONS, FileOps, instrumented

from marimo_store import (
    Entry,
    ExecutionKey,
    FsPersistentStore,
    NotFoundError,
    StoreWarning,
    persistent_cache,
)

ERRORS = (errno.EACCES, errno.EIO, errno.ENOENT, errno.EISDIR)
IN_SNAPSHOT = ExecutionKey("snap", "m1")
IN_LOG = ExecutionKey("log", "m2")
MISS = "miss"
ALL_KEYS: set[ExecutionKey] = set()
"""Every key the template holds (filled when it is made)."""


def values(key: ExecutionKey) -> dict[str, Any]:
    """An object file, a memory-mapped buffer and an inline value."""
    return {
        "text": f"{key.block_id};" * 400,
        "array": np.arange(2000, dtype=np.int64) + len(key.block_id),
        "n": len(key.block_id),
    }


def same(loaded: dict[str, Any], expected: dict[str, Any]) -> bool:
    return (
        loaded["text"] == expected["text"]
        and loaded["n"] == expected["n"]
        and np.array_equal(loaded["array"], expected["array"])
    )


COMPUTED = [0]


def square(x: int) -> list[int]:
    COMPUTED[0] += 1
    return [x * x] * 300


def cached_square(store: FsPersistentStore) -> Callable[[int], list[int]]:
    return persistent_cache(store=store, name="square", ignore="COMPUTED")(square)


def populate(root: Path) -> None:
    store = FsPersistentStore(root)
    store.put(Entry.of(IN_SNAPSHOT, values(IN_SNAPSHOT)))
    store.cleanup()  # IN_SNAPSHOT goes into a snapshot
    store.put(Entry.of(IN_LOG, values(IN_LOG)))
    store.save("model", np.arange(3000, dtype=np.float64))
    cached_square(store)(7)
    ALL_KEYS.update(metadata.key for metadata in store)
    store.close()


def files_of(root: Path) -> set[str]:
    return {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and path.parts[len(root.parts)] in ("objects", "log", "snapshots")
    }


def get_call(key: ExecutionKey) -> Callable[[FsPersistentStore], object]:
    def call(store: FsPersistentStore) -> object:
        entry = store.get(key)
        if entry is None:
            return MISS
        return same(entry.contents["variables"], values(key)) or "wrong value"

    return call


def load_model(store: FsPersistentStore) -> object:
    try:
        model = store.load("model")
    except NotFoundError:
        return MISS
    return np.array_equal(model, np.arange(3000, dtype=np.float64)) or "wrong value"


def iterate(store: FsPersistentStore) -> object:
    keys = {metadata.key for metadata in store}
    if not keys <= ALL_KEYS:
        return f"keys never stored: {keys - ALL_KEYS}"
    return True if keys == ALL_KEYS else MISS


def cached_call(store: FsPersistentStore) -> object:
    before = COMPUTED[0]
    if cached_square(store)(7) != [49] * 300:
        return "wrong value"
    return True if COMPUTED[0] == before else MISS


CALLS: dict[str, Callable[[FsPersistentStore], object]] = {
    "get-snapshot": get_call(IN_SNAPSHOT),
    "get-log": get_call(IN_LOG),
    "load": load_model,
    "iterate": iterate,
    "cached-call": cached_call,
}


def run(root: Path, call: Callable[[FsPersistentStore], object], ops: FileOps) -> tuple[Any, list]:
    store = FsPersistentStore(root, refresh_interval=0, cleanup_on_exit=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with instrumented(ops, READ_OPERATIONS):
            outcome = call(store)
    store.close()
    return outcome, [w for w in caught if issubclass(w.category, StoreWarning)]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "store"
    populate(root)
    return root


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_read_fault_is_a_miss_or_a_hit(template: Path, tmp_path: Path, name: str) -> None:
    call = CALLS[name]
    counting = FileOps(shadow_dir=str(tmp_path))
    outcome, caught = run(template, call, counting)
    assert outcome is True and not caught, f"{name} without faults: {outcome}, {caught}"
    reads = counting.count
    assert reads >= 3, counting.log
    expected_files = files_of(template)
    plans: list[tuple[str, dict[str, Any]]] = [
        (
            f"{errno.errorcode[code]}{'-persistent' if persistent else ''}",
            {"fault_at": 0, "fault_errno": code, "persistent": persistent},
        )
        for code in ERRORS
        for persistent in (False, True)
    ]
    plans.append(("replaced", {}))
    runs = 0
    for k in range(1, reads + 1):
        for label, plan in plans:
            root = tmp_path / "run"
            if root.exists():
                shutil.rmtree(root)
            shutil.copytree(template, root)
            if label == "replaced":
                ops = FileOps(shadow_dir=str(tmp_path), replace_at=k)
            else:
                ops = FileOps(shadow_dir=str(tmp_path), **{**plan, "fault_at": k})
            where = f"{name}: {label} at read {k} of {reads}"
            try:
                outcome, caught = run(root, call, ops)
            except OSError as error:
                pytest.fail(f"{where}: raised {error!r}; reads {ops.log}")
            assert outcome in (True, MISS), f"{where}: {outcome}"
            if ops.faults_raised == 0:
                continue  # a call that made fewer reads this time
            messages = [str(w.message) for w in caught]
            # Once: one warning at most; from then on: one per file that fails.
            limit = len(set(messages)) if "persistent" in label else 1
            assert len(messages) <= limit, f"{where}: {messages}"
            if outcome == MISS and label not in ("ENOENT", "ENOENT-persistent"):
                assert caught, f"{where}: a miss without a warning; reads {ops.log}"
            if label != "replaced":  # (a replaced object is damaged: quarantined)
                assert files_of(root) >= expected_files, f"{where}: a file was deleted"
            runs += 1
    print(f"{name}: {reads} reads, {runs} faulted runs")
