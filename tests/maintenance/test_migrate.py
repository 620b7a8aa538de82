"""`migrate_marimo_cache` on a cache directory laid out as marimo's FileStore
lays it out. (A migration of a cache written by real marimo runs is in
test_marimo_notebooks.py.)"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from _layout import objects_dir

from marimo_store import (
    DefaultCleanupStrategy,
    FsPersistentStore,
    MigrationReport,
    migrate_marimo_cache,
)
from marimo_store.marimo import MarimoStore

pytestmark = pytest.mark.usefixtures("home")  # the real user's configuration never counts

ARRAY = np.arange(50_000, dtype=np.float64)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write(root: Path, key: str, data: bytes, mtime: float | None = None) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@pytest.fixture
def marimo_cache(tmp_path: Path) -> dict[str, bytes]:
    """A cache as marimo 0.25 writes it: pickle, json and lazy entries, the
    kernel's notebook record, and leftovers of interrupted writes."""
    files = {
        "a/C_one.pickle": pickle.dumps({"hash": "one", "x": ARRAY}, protocol=5),
        "b/C_two.pickle": pickle.dumps({"hash": "two", "y": ARRAY}, protocol=5),
        "b/P_three.json": b'{"hash": "three", "defs": {"z": 1}}',
        "lazy/C_h4.jsonl": b'{"hash": "h4"}',
        "lazy/h4/x.npy": npy(ARRAY),
        "lazy/h4/return.pickle": pickle.dumps(7),
        "nb-0a30cf0177525eff.json": b'{"version": 1}',
    }
    for key, data in files.items():
        write(tmp_path / "cache", key, data, mtime=1_700_000_000.25)
    write(tmp_path / "cache", "a/C_one.pickle.tmp1a2b3c4d", b"half a value")
    write(tmp_path / "cache", "lazy/h5/x.npy", npy(ARRAY + 1))  # its manifest never came
    write(tmp_path / "cache", "odd/back\\slash.pickle", b"x")
    return files


def test_every_entry_is_found_through_marimo_store(
    tmp_path: Path, marimo_cache: dict[str, bytes]
) -> None:
    report = migrate_marimo_cache(tmp_path / "cache", tmp_path / "store")
    assert isinstance(report, MigrationReport)
    store = MarimoStore(tmp_path / "store")
    for key, data in marimo_cache.items():
        assert store.get(key) == data, key
    assert report.entries == 5
    assert report.files == len(marimo_cache)
    assert report.bytes_before == sum(map(len, marimo_cache.values()))
    # The array is in three files, stored once.
    assert report.bytes_before > 3 * ARRAY.nbytes
    assert ARRAY.nbytes < report.bytes_after < 1.1 * ARRAY.nbytes
    assert report.dedup_ratio > 2.9


def test_what_marimo_would_not_read_is_skipped_and_reported(
    tmp_path: Path, marimo_cache: dict[str, bytes]
) -> None:
    report = migrate_marimo_cache(tmp_path / "cache", tmp_path / "store")
    reasons = {
        Path(path).relative_to(tmp_path / "cache").as_posix(): r for path, r in report.skipped
    }
    assert reasons["a/C_one.pickle.tmp1a2b3c4d"] == "interrupted write"
    assert reasons["lazy/h5/x.npy"] == "blob of a lazy entry without its manifest"
    assert "backslash" in reasons["odd/back\\slash.pickle"]
    assert len(reasons) == 3
    assert MarimoStore(tmp_path / "store").get("lazy/h5/x.npy") is None


def test_entries_keep_their_file_times_and_lazy_entries_are_whole(
    tmp_path: Path, marimo_cache: dict[str, bytes]
) -> None:
    migrate_marimo_cache(tmp_path / "cache", tmp_path / "store")
    entries = {m.key.module_hash: m for m in FsPersistentStore(tmp_path / "store").entries()}
    assert {m.created_at for m in entries.values()} == {1_700_000_000_250}
    assert sorted(entries["h4"].variables) == [
        "lazy/C_h4.jsonl",
        "lazy/h4/return.pickle",
        "lazy/h4/x.npy",
    ]
    assert entries["C_one.pickle"].key.block_id == "a"


def test_running_it_again_stores_nothing_twice(
    tmp_path: Path, marimo_cache: dict[str, bytes]
) -> None:
    first = migrate_marimo_cache(tmp_path / "cache", tmp_path / "store")
    keys = {m.key for m in FsPersistentStore(tmp_path / "store").entries()}
    objects = sorted(objects_dir(tmp_path / "store").rglob("*"))
    second = migrate_marimo_cache(tmp_path / "cache", FsPersistentStore(tmp_path / "store"))
    assert second == first
    assert {m.key for m in FsPersistentStore(tmp_path / "store").entries()} == keys
    assert sorted(objects_dir(tmp_path / "store").rglob("*")) == objects


def test_a_missing_source_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        migrate_marimo_cache(tmp_path / "nothing", tmp_path / "store")


def test_the_cleanup_strategy_decides_how_many_entries_of_a_block_stay(tmp_path: Path) -> None:
    # A function cached over five arguments: five entries of one block.
    for i in range(5):
        write(tmp_path / "cache", f"f/D_arg{i}.pickle", pickle.dumps(i), mtime=1_700_000_000 + i)
    keep_all = DefaultCleanupStrategy(max_entries_per_block=None)
    three = DefaultCleanupStrategy(max_entries_per_block=3)
    migrate_marimo_cache(tmp_path / "cache", tmp_path / "all", cleanup_strategy=keep_all)
    migrate_marimo_cache(tmp_path / "cache", tmp_path / "three", cleanup_strategy=three)
    migrate_marimo_cache(tmp_path / "cache", tmp_path / "default")  # count limits are opt-in
    for name, strategy, kept in (("all", keep_all, 5), ("three", three, 3), ("default", None, 5)):
        store = MarimoStore(tmp_path / name, cleanup_strategy=strategy)
        store.store.cleanup()
        found = [i for i in range(5) if store.get(f"f/D_arg{i}.pickle") is not None]
        assert found == list(range(5 - kept, 5)), name
