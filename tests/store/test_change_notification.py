"""Change notification marks the index stale, so a miss re-reads other
writers' files only when something changed. Every test runs with both
backends: inotify read on demand (Linux's default) and the watchdog observer
(the default elsewhere, forced here).

Other writers are real other processes (or other instances); the safety
re-read every few seconds is switched off where a test must show that an
event, not polling, brought the change.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from _layout import log_dir

import marimo_store._changes as changes_module
import marimo_store._inotify as inotify_module
import marimo_store._refresh as refresh_module
import marimo_store._watchdog_observer as watch_module
from marimo_store import Entry, ExecutionKey, FsPersistentStore

NEVER = 10**9
FORK = multiprocessing.get_context("fork")


@pytest.fixture(params=["inotify", "watchdog"], autouse=True)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which change notification the stores of the test use."""
    monkeypatch.setattr(changes_module, "USE_INOTIFY", request.param == "inotify")
    return str(request.param)


def watched_paths(backend: str) -> set[str]:
    """Every directory this process watches, for the backend in use."""
    if backend == "watchdog":
        return {str(watch.path) for watch in watch_module._subscribers}
    process = inotify_module._process
    if process is None:
        return set()
    return {path for listeners in process.listeners.values() for path in listeners.values()}


@pytest.fixture
def events_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No safety re-read: only an event can make a miss refresh."""
    monkeypatch.setattr(refresh_module, "_WATCH_SAFETY_SECONDS", NEVER)


def put_in_another_process(root: Path, key: ExecutionKey, value: object) -> None:
    code = textwrap.dedent(
        f"""
        from marimo_store import Entry, ExecutionKey, FsPersistentStore
        store = FsPersistentStore({str(root)!r}, cleanup_on_exit=False)
        store.put(Entry.of(ExecutionKey({key.block_id!r}, {key.module_hash!r}), {value!r}))
        store.close()
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.002)
    return time.monotonic() - started


def watching(store: FsPersistentStore) -> None:
    """A miss starts the watch in the background; wait until it runs."""
    assert store.get(ExecutionKey("w", "missing")) is None
    wait_for(lambda: store._live.watch is not None)


def count_refreshes(store: FsPersistentStore) -> list[int]:
    """A counter of the store's re-reads of snapshots/ and log/ (one pass
    per refresh that is not skipped, while no cleanup runs meanwhile)."""
    counter = [0]
    original = store._live._catch_up

    def counting() -> None:
        counter[0] += 1
        original()

    store._live._catch_up = counting  # type: ignore[method-assign]
    return counter


@pytest.mark.usefixtures("events_only")
def test_another_process_entry_arrives_by_event(store_path: Path) -> None:
    reader = FsPersistentStore(store_path, refresh_interval=3600, cleanup_on_exit=False)
    put_in_another_process(store_path, ExecutionKey("w", "first"), {"v": 1})
    watching(reader)
    assert reader.get(ExecutionKey("w", "first")) is not None
    put_in_another_process(store_path, ExecutionKey("w", "second"), {"v": 2})
    # With refresh_interval=3600 and no safety re-read, only an event can bring it.
    wait_for(lambda: reader.get(ExecutionKey("w", "second")) is not None)
    entry = reader.get(ExecutionKey("w", "second"))
    assert entry is not None and entry.variables["v"] == 2


@pytest.mark.usefixtures("events_only")
def test_misses_refresh_only_when_something_changed(store_path: Path) -> None:
    writer = FsPersistentStore(store_path, cleanup_on_exit=False)
    writer.put(Entry.of(ExecutionKey("w", "a"), {"v": "a"}))
    reader = FsPersistentStore(store_path, refresh_interval=0.001, cleanup_on_exit=False)
    watching(reader)
    refreshes = count_refreshes(reader)
    time.sleep(0.1)  # let any event of the setup arrive
    reader.get(ExecutionKey("w", "missing"))
    settled = refreshes[0]
    for _ in range(2000):
        assert reader.get(ExecutionKey("w", "missing")) is None
    assert refreshes[0] == settled  # 2000 misses, nothing changed: no re-read at all
    writer.put(Entry.of(ExecutionKey("w", "b"), {"v": "b"}))
    wait_for(lambda: reader.get(ExecutionKey("w", "b")) is not None)
    assert refreshes[0] > settled
    # The reader's own reads raise no events (opened/closed-without-writing are ignored).
    after = refreshes[0]
    time.sleep(0.1)
    for _ in range(100):
        reader.get(ExecutionKey("w", "missing"))
    assert refreshes[0] <= after + 1


@pytest.mark.usefixtures("events_only")
def test_directories_created_later_are_watched(store_path: Path) -> None:
    store_path.mkdir()
    reader = FsPersistentStore(store_path, refresh_interval=3600, cleanup_on_exit=False)
    watching(reader)  # an empty directory
    writer = FsPersistentStore(store_path, cleanup_on_exit=False)
    writer.put(Entry.of(ExecutionKey("w", "logged"), {"v": 1}))  # creates log/
    wait_for(lambda: reader.get(ExecutionKey("w", "logged")) is not None)
    writer.put(Entry.of(ExecutionKey("w", "snapshotted"), {"v": 2}))
    writer.close()
    # Creates snapshots/ and deletes the writer's segment: the entry is only
    # in the snapshot now (the reader's own segment holds an access record).
    assert writer.cleanup().segments_deleted == 1
    wait_for(lambda: reader.get(ExecutionKey("w", "snapshotted")) is not None)


def test_polling_where_watching_fails(
    store_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    def no_watches(*args: object) -> None:
        raise OSError(28, "inotify watch limit reached")

    if backend == "watchdog":
        monkeypatch.setattr(watch_module, "_subscribe", no_watches)
    else:
        monkeypatch.setattr(inotify_module._ProcessInotify, "add", no_watches)
    reader = FsPersistentStore(store_path, refresh_interval=0.05, cleanup_on_exit=False)
    put_in_another_process(store_path, ExecutionKey("w", "a"), {"v": 1})
    assert reader.get(ExecutionKey("w", "missing")) is None  # the watch fails to start
    wait_for(lambda: reader._live.watch_unavailable)
    refreshes = count_refreshes(reader)
    put_in_another_process(store_path, ExecutionKey("w", "b"), {"v": 2})
    wait_for(lambda: reader.get(ExecutionKey("w", "b")) is not None)
    assert refreshes[0] >= 1


@pytest.mark.usefixtures("events_only")
def test_own_writes_do_not_make_misses_refresh(store_path: Path) -> None:
    """The persistent_cache pattern (a miss, then a put) in a watching store:
    its own appends are in its index already and must not cost a re-read."""
    store = FsPersistentStore(store_path, refresh_interval=3600, cleanup_on_exit=False)
    store.put(Entry.of(ExecutionKey("w", "first"), {"v": 0}))
    watching(store)
    time.sleep(0.1)  # let any event of the setup arrive
    store.get(ExecutionKey("w", "missing"))
    refreshes = count_refreshes(store)
    for i in range(300):
        assert store.get(ExecutionKey("w", f"new{i}")) is None
        store.put(Entry.of(ExecutionKey("w", f"new{i}"), {"v": i}))
    time.sleep(0.1)
    store.get(ExecutionKey("w", "missing"))
    assert refreshes[0] == 0
    put_in_another_process(store_path, ExecutionKey("w", "other"), {"v": -1})
    wait_for(lambda: store.get(ExecutionKey("w", "other")) is not None)  # others' still do


def test_refresh_interval_zero_polls_on_every_miss(store_path: Path) -> None:
    reader = FsPersistentStore(store_path, refresh_interval=0, cleanup_on_exit=False)
    refreshes = count_refreshes(reader)
    for _ in range(5):
        assert reader.get(ExecutionKey("w", "missing")) is None
    assert refreshes[0] == 6  # the first lookup's load, then one per miss: no watch
    put_in_another_process(store_path, ExecutionKey("w", "a"), {"v": 1})
    assert reader.get(ExecutionKey("w", "a")) is not None  # no event to wait for


def test_import_open_and_hits_do_not_load_watchdog(store_path: Path, backend: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys, threading, time
        import marimo_store
        import marimo_store._changes
        marimo_store._changes.USE_INOTIFY = {backend == "inotify"}
        assert "watchdog" not in sys.modules
        store = marimo_store.FsPersistentStore({str(store_path)!r}, cleanup_on_exit=False)
        key = marimo_store.ExecutionKey("w", "hit")
        store.put(marimo_store.Entry.of(key, {{"v": 1}}))
        assert store.get(key) is not None
        assert "watchdog" not in sys.modules, "a hit loaded watchdog"
        assert threading.active_count() == 1
        store.get(marimo_store.ExecutionKey("w", "miss"))  # starts watching, in the background
        deadline = time.monotonic() + 30
        while store._live.watch is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        if {backend == "inotify"}:  # no watchdog, and no thread once the watch runs
            assert "watchdog" not in sys.modules
            while threading.active_count() > 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        else:
            assert "watchdog" in sys.modules
        threads = [t for t in threading.enumerate() if t is not threading.main_thread()]
        assert all(t.daemon for t in threads), threads
        print("ok", len(threads))
        """
    )
    # The main thread returns with any observer still running: the process must exit.
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def _child_waits_for_the_parents_entry(store: FsPersistentStore, conn: Connection) -> None:
    try:
        inherited = store._live.watch
        watching(store)  # a watch of its own
        own = store._live.watch
        conn.send(("ready", inherited is not None, own is not None and own is not inherited))
        assert conn.recv() == "go"
        deadline = time.monotonic() + 30
        while store.get(ExecutionKey("w", "after-fork")) is None:
            assert time.monotonic() < deadline, "never saw the parent's entry"
            time.sleep(0.002)
        alive = [t.name for t in threading.enumerate() if t.daemon]
        conn.send(("seen", alive))
    except BaseException as error:
        conn.send(("error", repr(error)))


@pytest.mark.usefixtures("events_only")
def test_forked_child_does_not_use_the_parents_dead_observer(store_path: Path) -> None:
    store = FsPersistentStore(store_path, refresh_interval=3600, cleanup_on_exit=False)
    store.put(Entry.of(ExecutionKey("w", "before-fork"), {"v": 0}))
    watching(store)
    parent_end, child_end = FORK.Pipe()
    child = FORK.Process(target=_child_waits_for_the_parents_entry, args=(store, child_end))
    child.start()
    assert parent_end.poll(60), "the child did not report"
    status, had_inherited, started_own = parent_end.recv()
    assert status == "ready", had_inherited
    assert had_inherited and started_own
    writer = FsPersistentStore(store_path, cleanup_on_exit=False)
    writer.put(Entry.of(ExecutionKey("w", "after-fork"), {"v": 1}))
    parent_end.send("go")
    assert parent_end.poll(60), "the child did not report"
    status, detail = parent_end.recv()
    child.join(30)
    assert status == "seen", detail
    assert child.exitcode == 0
    # The parent's own watch still works.
    writer.put(Entry.of(ExecutionKey("w", "later"), {"v": 2}))
    wait_for(lambda: store.get(ExecutionKey("w", "later")) is not None)


def test_closing_a_store_stops_its_watches(store_path: Path, backend: str) -> None:
    store_path.mkdir()
    log_dir(store_path).mkdir()
    stores = [FsPersistentStore(store_path, cleanup_on_exit=False) for _ in range(3)]
    for store in stores:
        watching(store)
    assert str(store_path) in watched_paths(backend)
    del stores, store
    import gc

    gc.collect()
    wait_for(lambda: not any(str(store_path) in path for path in watched_paths(backend)))
    assert os.path.isdir(store_path)
