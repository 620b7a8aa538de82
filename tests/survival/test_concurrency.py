"""Several real processes on one store directory: no locks, no lost or wrong entries."""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from pathlib import Path

import pytest
from conftest import StoreFactory
from workers import concurrency as concurrency_workers

from marimo_store import Entry, ExecutionKey, StoreWarning

SPAWN = multiprocessing.get_context("spawn")
JOIN_TIMEOUT = 120


def _join(process: multiprocessing.process.BaseProcess) -> None:
    process.join(JOIN_TIMEOUT)
    if process.is_alive():
        process.kill()
        process.join()
        pytest.fail(f"{process.name} did not finish")
    assert process.exitcode == 0, f"{process.name} exited with {process.exitcode}"


def _writer_ids(root: Path) -> set[str]:
    """Writer ids named by the segment files (`<writer>.<n>.log`)."""
    return {path.name.rsplit(".", 2)[0] for path in (root / "log").glob("*.log")}


def _pid_of(writer_id: str) -> int:
    """A writer id is `<host>-<pid>-<random>`."""
    return int(writer_id.rsplit("-", 2)[1])


def test_concurrent_writers_lose_nothing(make_store: StoreFactory, store_path: Path) -> None:
    workers, count = concurrency_workers.CONCURRENT_WORKERS, concurrency_workers.PUTS_PER_WORKER
    start = SPAWN.Barrier(workers + 1)  # all writers start together, with the reader
    processes = [
        SPAWN.Process(
            target=concurrency_workers.put_many,
            args=(str(store_path), worker, count, start, 0.002),
            name=f"writer-{worker}",
        )
        for worker in range(workers)
    ]
    for process in processes:
        process.start()
    start.wait(60)

    # Read while they write: whatever is visible must be complete and correct,
    # and half-written records or segments are not damage (no warning).
    reader = make_store(refresh_interval=0)
    seen_while_writing = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        while any(process.is_alive() for process in processes):
            for worker in range(workers):
                i = (seen_while_writing * 37 + worker * 11) % count
                entry = reader.get(concurrency_workers.concurrent_key(worker, i))
                if entry is not None:
                    assert dict(entry.variables) == concurrency_workers.concurrent_value(worker, i)
            seen_while_writing += 1
            time.sleep(0.005)
        for process in processes:
            _join(process)
    assert not [w for w in caught if issubclass(w.category, StoreWarning)], [
        str(w.message) for w in caught
    ]

    # A fifth, fresh process sees every entry with its value.
    receiver, sender = SPAWN.Pipe(duplex=False)
    verifier = SPAWN.Process(
        target=concurrency_workers.verify_all, args=(str(store_path), workers, count, sender)
    )
    verifier.start()
    sender.close()
    report = receiver.recv()
    _join(verifier)
    assert report == {"listed": workers * count, "correct": workers * count, "wrong": []}

    # So does a fresh store in this process, and the reader that watched them write.
    for store in (make_store(), reader):
        assert len(store.entries()) == workers * count
        for worker in range(workers):
            for i in range(count):
                entry = store.get(concurrency_workers.concurrent_key(worker, i))
                assert entry is not None, (worker, i)
                assert dict(entry.variables) == concurrency_workers.concurrent_value(worker, i)

    # A worker process never shows up under two writer ids (no file was
    # shared). Readers append access records under ids of their own, and the
    # workers' exit cleanups may already have deleted sealed segments.
    worker_pids = {process.pid for process in processes}
    pids = [_pid_of(writer) for writer in _writer_ids(store_path)]
    assert all(pids.count(pid) == 1 for pid in worker_pids & set(pids))
    # Values were both inline and object files, and shared ones were deduplicated.
    metadata = make_store().entries()
    inline = [m.variables["v"].inline for m in metadata]
    assert any(inline)
    assert not all(inline)
    shared_ids = {m.variables["shared"].id for m in metadata}
    assert len(shared_ids) == 50


@pytest.mark.parametrize("refresh_interval", [0, 0.2])
def test_entry_from_another_process_is_seen_after_a_miss(
    make_store: StoreFactory, store_path: Path, refresh_interval: float
) -> None:
    reader = make_store(refresh_interval=refresh_interval)
    keys = [ExecutionKey("remote", f"m{i}") for i in range(3)]
    values = [{"x": 1}, {"x": [2, "two"]}, {"x": "3" * 5000}]  # the last is an object file
    for key in keys:
        assert reader.get(key) is None

    parent_end, child_end = SPAWN.Pipe()
    writer = SPAWN.Process(
        target=concurrency_workers.serve_puts,
        args=(str(store_path), {"refresh_interval": refresh_interval}, child_end),
    )
    writer.start()
    child_end.close()
    try:
        for index, (key, value) in enumerate(zip(keys, values, strict=True)):
            assert reader.get(key) is None  # a miss just before it is written
            parent_end.send((key.block_id, key.module_hash, value))
            created_at = parent_end.recv()
            time.sleep(refresh_interval + 0.05)
            # The same instance, never reopened, now sees it (appended to the
            # segment it has already read part of, for all but the first).
            entry = reader.get(key)
            assert entry is not None, index
            assert dict(entry.variables) == value
            assert entry.key == key.at(created_at)
            for later in keys[index + 1 :]:
                assert reader.get(later) is None
    finally:
        parent_end.send(None)
        assert parent_end.recv() == "closed"
        _join(writer)
    time.sleep(refresh_interval + 0.05)
    assert [m.key.module_hash for m in reader.entries()] == ["m0", "m1", "m2"]


def test_entries_lists_other_processes_entries_without_reopening(
    make_store: StoreFactory, store_path: Path
) -> None:
    reader = make_store(refresh_interval=0)
    assert reader.entries() == []
    parent_end, child_end = SPAWN.Pipe()
    writer = SPAWN.Process(
        target=concurrency_workers.serve_puts, args=(str(store_path), {}, child_end)
    )
    writer.start()
    child_end.close()
    try:
        for i in range(5):
            parent_end.send(("listed", f"m{i}", {"i": i}))
            parent_end.recv()
            assert [m.key.module_hash for m in reader.entries()] == [f"m{j}" for j in range(i + 1)]
    finally:
        parent_end.send(None)
        assert parent_end.recv() == "closed"
        _join(writer)


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
def test_forked_child_writes_its_own_segment(make_store: StoreFactory, store_path: Path) -> None:
    store = make_store(refresh_interval=0)
    parent_key = ExecutionKey("fork", "parent")
    child_key = ExecutionKey("fork", "child")
    later_key = ExecutionKey("fork", "parent-later")
    store.put(Entry.of(parent_key, {"who": "parent", "big": "p" * 3000}))
    (parent_segment,) = (store_path / "log").glob("*.log")
    parent_bytes = parent_segment.read_bytes()

    fork = multiprocessing.get_context("fork")
    receiver, sender = fork.Pipe(duplex=False)
    child = fork.Process(
        target=concurrency_workers.put_with_inherited_store,
        args=(store, child_key, {"who": "child", "big": "c" * 3000}, sender),
    )
    child.start()
    sender.close()
    status, child_pid = receiver.recv()
    assert status == "ok", child_pid
    _join(child)

    # The child did not touch the parent's segment.
    assert parent_segment.read_bytes() == parent_bytes
    writer_ids = _writer_ids(store_path)
    assert len(writer_ids) == 2
    assert {_pid_of(writer_id) for writer_id in writer_ids} == {os.getpid(), child_pid}

    # The parent keeps writing to its own segment, and sees the child's entry.
    store.put(Entry.of(later_key, {"who": "parent again"}))
    assert _writer_ids(store_path) == writer_ids
    assert parent_segment.read_bytes().startswith(parent_bytes)
    assert len(parent_segment.read_bytes()) > len(parent_bytes)
    seen = store.get(child_key)
    assert seen is not None
    assert seen.variables["who"] == "child"

    fresh = make_store()
    expected = {
        parent_key: {"who": "parent", "big": "p" * 3000},
        child_key: {"who": "child", "big": "c" * 3000},
        later_key: {"who": "parent again"},
    }
    for key, value in expected.items():
        entry = fresh.get(key)
        assert entry is not None, key
        assert dict(entry.variables) == value
    assert len(fresh.entries()) == 3
