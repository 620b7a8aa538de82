"""A store pickles as its configuration: small, equal, and usable in another process."""

from __future__ import annotations

import multiprocessing
import pickle
import time
from pathlib import Path
from typing import Any

import pytest
from _layout import log_dir
from conftest import StoreFactory
from workers import concurrency as concurrency_workers

from marimo_store import Entry, ExecutionKey, FsPersistentStore

SPAWN = multiprocessing.get_context("spawn")

NON_DEFAULT_OPTIONS: dict[str, Any] = {
    "object_id_mode": "execution_key_qualified",
    "auto_variables_format": "json",
    "inline_threshold": 100,
    "durability": "fsync",
    "verify_reads": False,
    "cloudpickle_fallback": False,
    "memory_map": False,
    "refresh_interval": 1.5,
}


def _segment_writers(root: Path) -> set[str]:
    return {path.name.rsplit(".", 2)[0] for path in log_dir(root).glob("*.log")}


@pytest.mark.parametrize("options", [{}, NON_DEFAULT_OPTIONS], ids=["defaults", "non-defaults"])
def test_round_trip_is_equal(make_store: StoreFactory, options: dict[str, Any]) -> None:
    store = make_store(**options)
    copy = pickle.loads(pickle.dumps(store))
    try:
        assert type(copy) is FsPersistentStore
        assert copy is not store
        assert copy == store
        assert hash(copy) == hash(store)
        assert dict(copy.config) == dict(store.config)
        assert repr(copy) == repr(store)
        for name, value in options.items():
            assert copy.config[name] == value
    finally:
        copy.close()


def test_round_trip_of_a_used_store(make_store: StoreFactory, store_path: Path) -> None:
    store = make_store()
    key = ExecutionKey("pickled", "before")
    store.put(Entry.of(key, {"x": "a" * 2000, "y": 1}))
    assert store.get(key) is not None

    copy = pickle.loads(pickle.dumps(store))
    with copy:
        assert copy == store
        assert hash(copy) == hash(store)
        # The copy opens nothing of the original: it reads from disk ...
        writers_before = _segment_writers(store_path)
        entry = copy.get(key)
        assert entry is not None
        assert dict(entry.variables) == {"x": "a" * 2000, "y": 1}
        # ... and writes (its access record and its entry) to a segment of its own.
        copy.put(Entry.of(ExecutionKey("pickled", "by-copy"), {"z": 3}))
        assert len(_segment_writers(store_path)) == len(writers_before) + 1
    store.put(Entry.of(ExecutionKey("pickled", "after"), {"w": 4}))
    assert len(_segment_writers(store_path)) == 2

    time.sleep(store.refresh_interval + 0.05)
    seen = store.get(ExecutionKey("pickled", "by-copy"))
    assert seen is not None
    assert dict(seen.variables) == {"z": 3}


def test_equality_follows_configuration(make_store: StoreFactory, tmp_path: Path) -> None:
    store = make_store()
    assert store == make_store()
    assert hash(store) == hash(make_store())
    assert store != make_store(inline_threshold=100)
    assert store != make_store(tmp_path / "elsewhere")
    assert store != object()
    assert len({store, make_store(), make_store(durability="fsync")}) == 2


def test_pickled_path_is_absolute(
    make_store: StoreFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = make_store(Path("relative-store"))
    store.put(Entry.of(ExecutionKey("b", "m"), {"x": 1}))
    data = pickle.dumps(store)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    copy = pickle.loads(data)
    with copy:
        assert copy == store
        assert Path(copy.path) == tmp_path / "relative-store"
        entry = copy.get(ExecutionKey("b", "m"))
        assert entry is not None
        assert entry.variables["x"] == 1
    assert not (elsewhere / "relative-store").exists()


def test_pickled_store_stays_small(make_store: StoreFactory) -> None:
    store = make_store()
    empty_size = len(pickle.dumps(store))
    for i in range(300):
        store.put(Entry.of(ExecutionKey("many", f"m{i}"), {"x": i, "text": "t" * (i * 7)}))
    assert len(store.entries()) == 300
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        size = len(pickle.dumps(store, protocol=protocol))
        assert size < 1024, (protocol, size)
    assert len(pickle.dumps(store)) == empty_size


def test_spawned_worker_uses_the_pickled_store(make_store: StoreFactory, store_path: Path) -> None:
    # No exit cleanup in the child: it would (rightly) fold the child's sealed
    # segment into a snapshot and delete it, and this test inspects segments.
    store = make_store(cleanup_on_exit=False)
    expected: dict[tuple[str, str], dict[str, Any]] = {
        ("parent", f"m{i}"): {"i": i, "text": "p" * (i * 300)} for i in range(5)
    }
    for (block_id, module_hash), variables in expected.items():
        store.put(Entry.of(ExecutionKey(block_id, module_hash), variables))
    own_variables = {"from": "child", "big": "c" * 4000}

    receiver, sender = SPAWN.Pipe(duplex=False)
    child = SPAWN.Process(
        target=concurrency_workers.read_and_put,
        args=(store, expected, ("child", "m0", own_variables), sender),
    )
    child.start()
    sender.close()
    report = receiver.recv()
    child.join(120)
    assert child.exitcode == 0, report
    assert "error" not in report, report["error"]

    assert report["found"] == expected
    assert report["config"] == dict(store.config)

    # The parent sees the child's entry without reopening.
    time.sleep(store.refresh_interval + 0.05)
    entry = store.get(ExecutionKey("child", "m0"))
    assert entry is not None
    assert dict(entry.variables) == own_variables
    assert entry.key.created_at == report["created_at"]
    # Each process wrote its own segment.
    writers = _segment_writers(store_path)
    assert len(writers) == 2
    assert any(f"-{report['pid']}-" in writer for writer in writers)

    fresh = make_store()
    assert len(fresh.entries()) == 6
