"""Named objects: save, load, delete, names, info and exists on every kind of store."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _layout import object_path

from marimo_store import (
    DefaultCleanupStrategy,
    Entry,
    ExecutionKey,
    FsPersistentStore,
    InvalidArgumentError,
    LegacyPersistentStore,
    NotFoundError,
    ObjectInfo,
    StoreError,
    StoreWarning,
)


def _later(previous_ms: int) -> None:
    """Wait until the clock has passed `previous_ms`, so the next version is newer."""
    while time.time_ns() // 1_000_000 <= previous_ms:
        time.sleep(0.001)


def test_save_then_load_returns_an_equal_object(any_store: Any) -> None:
    array = np.arange(100_000, dtype=np.float64)  # 800 kB: an out-of-band buffer
    metadata = any_store.save("features", {"array": array, "label": "train"})
    assert metadata.key.block_id == "features"
    loaded = any_store.load("features")
    assert loaded["label"] == "train"
    np.testing.assert_array_equal(loaded["array"], array)
    assert any_store.exists("features")
    assert any_store.names() == ["features"]


def test_the_newest_version_wins_and_older_ones_stay_reachable(any_store: Any) -> None:
    first = any_store.save("model", {"weights": [1, 2, 3]})
    _later(first.created_at)
    second = any_store.save("model", {"weights": [4, 5, 6]})
    assert second.created_at > first.created_at
    assert any_store.load("model") == {"weights": [4, 5, 6]}

    if isinstance(any_store, LegacyPersistentStore):
        # One file per computation: a save replaces the previous version.
        with pytest.raises(NotFoundError, match="at or before"):
            any_store.load("model", at=first.created_at)
        assert len(any_store.info("model").versions) == 1
        return
    assert any_store.load("model", at=first.created_at) == {"weights": [1, 2, 3]}
    assert any_store.load("model", at=second.created_at) == {"weights": [4, 5, 6]}
    moment = datetime.datetime.fromtimestamp(first.created_at / 1000, tz=datetime.timezone.utc)
    assert any_store.load("model", at=moment) == {"weights": [1, 2, 3]}
    with pytest.raises(NotFoundError, match="at or before"):
        any_store.load("model", at=first.created_at - 1)
    versions = any_store.info("model").versions
    assert [v.created_at for v in versions] == [second.created_at, first.created_at]


def test_info_describes_the_versions_without_loading_them(any_store: Any) -> None:
    any_store.save("table", [1, 2], metadata={"source": "sensor-a", "rows": 2})
    data = np.ones(50_000)  # 400 kB: stored as an out-of-band buffer
    saved = any_store.save("table", data, metadata={"source": "sensor-b", "rows": 50_000})
    info = any_store.info("table")
    assert isinstance(info, ObjectInfo)
    assert info.name == "table"
    assert info.latest == saved
    assert info.created_at == saved.created_at
    assert info.user_metadata == {"source": "sensor-b", "rows": 50_000}
    assert info.format == "pickle"
    assert info.size >= data.nbytes
    assert info.environment.packages.get("numpy") == np.__version__
    assert info.environment.python.count(".") == 2


def test_json_format_is_kept(any_store: Any) -> None:
    any_store.save("config", {"lr": 0.1, "layers": [64, 32]}, format="json")
    assert any_store.info("config").format == "json"
    assert any_store.load("config") == {"lr": 0.1, "layers": [64, 32]}


def test_delete_removes_every_version(any_store: Any) -> None:
    first = any_store.save("scratch", 1)
    _later(first.created_at)
    any_store.save("scratch", 2)
    any_store.save("kept", 3)
    deleted = any_store.delete("scratch")
    assert deleted == (1 if isinstance(any_store, LegacyPersistentStore) else 2)
    assert not any_store.exists("scratch")
    assert any_store.names() == ["kept"]
    with pytest.raises(NotFoundError):
        any_store.load("scratch")
    with pytest.raises(NotFoundError):
        any_store.delete("scratch")
    assert any_store.load("kept") == 3


def test_missing_names_raise_not_found_which_is_a_key_error(any_store: Any) -> None:
    for call in (
        lambda: any_store.load("absent"),
        lambda: any_store.info("absent"),
        lambda: any_store.delete("absent"),
    ):
        with pytest.raises(NotFoundError, match="no object named 'absent'") as caught:
            call()
        assert isinstance(caught.value, KeyError)
        assert isinstance(caught.value, StoreError)
    assert not any_store.exists("absent")
    assert any_store.names() == []


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "non-empty str"),
        (None, "non-empty str"),
        (42, "non-empty str"),
        ("a\x00b", "NUL"),
        ("x" * 257, "at most 256 characters"),
        ("bad\ud800", "valid Unicode"),
    ],
)
def test_invalid_names_are_refused_clearly(any_store: Any, name: Any, problem: str) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: any_store.save(name, 1),
        lambda: any_store.load(name),
        lambda: any_store.info(name),
        lambda: any_store.exists(name),
        lambda: any_store.delete(name),
    ]
    for call in calls:
        with pytest.raises(InvalidArgumentError, match=problem):
            call()
    assert any_store.names() == []


def test_names_of_any_text_work(any_store: Any) -> None:
    names = ["results/2024/run 1", "../escape", "ünïcödé ✓", "x" * 256, "h-abc"]
    for i, name in enumerate(names):
        any_store.save(name, i)
    assert any_store.names() == sorted(names)
    for i, name in enumerate(names):
        assert any_store.load(name) == i


def test_bad_arguments_are_refused(any_store: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="metadata must be a mapping"):
        any_store.save("x", 1, metadata=[("a", 1)])
    with pytest.raises(InvalidArgumentError, match="user metadata must be plain data"):
        any_store.save("x", 1, metadata={"when": object()})
    with pytest.raises(InvalidArgumentError, match="at must be None, a datetime"):
        any_store.load("x", at="yesterday")
    with pytest.raises(InvalidArgumentError, match="version_policy must be"):
        any_store.load("x", version_policy="lenient")
    assert not any_store.exists("x")


def test_named_objects_do_not_mix_with_cached_entries(tmp_path: Path) -> None:
    store = FsPersistentStore(tmp_path / "store")
    store.put(Entry.of(ExecutionKey("model", "0123abcd"), {"return": "cached"}))
    store.save("model", "named")
    assert store.load("model") == "named"
    assert store.names() == ["model"]
    entry = store.get(ExecutionKey("model", "0123abcd"))
    assert entry is not None
    assert entry.variables["return"] == "cached"
    store.close()


def test_another_process_instance_sees_new_versions(tmp_path: Path) -> None:
    """`load` catches up with other writers: a name is not a cache key, its
    newest version changes."""
    writer = FsPersistentStore(tmp_path / "store")
    reader = FsPersistentStore(tmp_path / "store", refresh_interval=0)
    first = writer.save("status", "running")
    assert reader.load("status") == "running"
    _later(first.created_at)
    writer.save("status", "done")
    assert reader.load("status") == "done"
    assert reader.info("status").versions[0].user_metadata == {}
    writer.close()
    reader.close()


def test_cleanup_keeps_the_newest_versions_of_a_name(tmp_path: Path) -> None:
    store = FsPersistentStore(tmp_path / "store")
    created = []
    for version in range(6):
        created.append(store.save("checkpoint", {"step": version}).created_at)
        _later(created[-1])
    store.save("other", "untouched")

    keep_four = DefaultCleanupStrategy(max_entries_per_block=4, max_entries_per_module=None)
    report = store.cleanup(keep_four)
    assert len(report.dropped) == 2
    versions = store.info("checkpoint").versions
    assert [v.created_at for v in versions] == created[:1:-1]
    assert store.load("checkpoint") == {"step": 5}
    with pytest.raises(NotFoundError):
        store.load("checkpoint", at=created[1])

    # The default strategy has no count limit: every version fitting 1 GB stays.
    assert store.cleanup().dropped == []
    # A name's versions are the runs of one computation, so a per-computation
    # limit (2) applies as well as a per-block one (3).
    counted = DefaultCleanupStrategy(max_entries_per_block=3, max_entries_per_module=2)
    store.cleanup(counted)
    assert [v.created_at for v in store.info("checkpoint").versions] == created[:3:-1]
    assert store.load("other") == "untouched"
    fresh = FsPersistentStore(tmp_path / "store")
    assert fresh.load("checkpoint") == {"step": 5}
    assert fresh.names() == ["checkpoint", "other"]
    fresh.close()
    store.close()


def test_a_damaged_newest_version_is_not_replaced_by_an_older_one(tmp_path: Path) -> None:
    store = FsPersistentStore(tmp_path / "store")
    first = store.save("blob", b"a" * 10_000)
    _later(first.created_at)
    second = store.save("blob", b"b" * 10_000)
    ref = second.variables["value"]
    path = object_path(tmp_path / "store", ref.id)
    path.write_bytes(b"x" * ref.size)  # same size, other bytes: fails verification
    with (
        pytest.warns(StoreWarning, match="damaged object"),
        pytest.raises(NotFoundError, match="could not be loaded: its files are missing"),
    ):
        store.load("blob")
    assert store.load("blob", at=first.created_at) == b"a" * 10_000
    store.close()
