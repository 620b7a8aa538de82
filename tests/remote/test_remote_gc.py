"""Cleanup of a remote: segment compaction and object GC under a lease taken
with a conditional write, a grace period, and a re-check before delete,
safe while another machine puts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from marimo_store import Entry, ExecutionKey
from marimo_store._format.framing import pack
from marimo_store._format.keys import LEASE_KEY, OBJECTS_PREFIX
from marimo_store.remote import RemoteStore

PUTTER = Path(__file__).with_name("_putter.py")


def objects(store: RemoteStore) -> int:
    return len(list(store.medium.list(OBJECTS_PREFIX)))


def test_gc_frees_the_objects_of_deleted_entries_only(remote: str) -> None:
    store = RemoteStore(remote)
    shared = np.arange(20_000)
    store.put(Entry(ExecutionKey("a", "m"), {"variables": {"s": shared, "o": np.ones(20_000)}}))
    store.put(Entry(ExecutionKey("b", "m"), {"variables": {"s": shared, "o": np.zeros(20_000)}}))
    assert objects(store) == 3
    assert store.collect_garbage(grace_seconds=0, recheck_seconds=0).deleted == 0
    store.delete_entries([ExecutionKey("a", "m")])
    young = store.collect_garbage(grace_seconds=3600, recheck_seconds=0)
    assert (young.deleted, young.kept) == (0, 1)
    report = store.collect_garbage(grace_seconds=0, recheck_seconds=0)
    assert (report.busy, report.deleted, report.freed_bytes) == (False, 1, 160_000)
    hit = RemoteStore(remote).get(ExecutionKey("b", "m"))
    assert hit is not None and np.array_equal(hit.variables["s"], shared)
    assert store.medium.head(LEASE_KEY) is None


def test_gc_never_deletes_a_key_under_objects_that_names_no_object(remote: str) -> None:
    """What a put never writes (a stray name under `objects/`) is not the
    store's to delete: GC leaves it, however old."""
    store = RemoteStore(remote)
    strays = [f"{OBJECTS_PREFIX}ab/notes.txt", f"{OBJECTS_PREFIX}ab/{'0' * 31}"]
    for key in strays:
        store.medium.put_once(key, [b"kept"])
    store.put(Entry(ExecutionKey("a", "m"), {"variables": {"o": np.ones(20_000)}}))
    store.delete_entries([ExecutionKey("a", "m")])
    report = store.collect_garbage(grace_seconds=0, recheck_seconds=0)
    assert report.deleted == 1
    assert [store.medium.read(key) for key in strays] == [b"kept", b"kept"]


def test_a_held_lease_makes_gc_do_nothing_and_a_lapsed_one_is_taken(remote: str) -> None:
    store = RemoteStore(remote)
    store.put(Entry(ExecutionKey("a", "m"), {"variables": {"o": np.ones(20_000)}}))
    store.delete_entries([ExecutionKey("a", "m")])
    store.medium.put_once(LEASE_KEY, [pack({"holder": "other", "until": time.time() + 600})])
    assert store.collect_garbage(grace_seconds=0, recheck_seconds=0).busy
    assert objects(store) == 1 and store.medium.head(LEASE_KEY) is not None
    store.medium.replace(LEASE_KEY, pack({"holder": "crashed", "until": time.time() - 1}))
    assert store.collect_garbage(grace_seconds=0, recheck_seconds=0).deleted == 1
    assert store.medium.head(LEASE_KEY) is None


def test_gc_while_another_machine_puts_leaves_no_entry_dangling(remote: str) -> None:
    putter = subprocess.Popen(
        [sys.executable, str(PUTTER), remote, "6"], stdout=subprocess.PIPE, text=True
    )
    gc = RemoteStore(remote, refresh_interval=0)
    reports = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        gc.refresh()
        gc.delete_entries([metadata.key for metadata in gc.entries()])  # all, as seen now
        reports.append(gc.collect_garbage(grace_seconds=0, recheck_seconds=0.5))
    putter.communicate(timeout=120)
    assert putter.returncode == 0
    assert sum(report.deleted for report in reports) > 0
    reader = RemoteStore(remote)
    live = reader.entries()
    assert live  # the putter's last entries, put after the last deletion
    for metadata in live:
        hit = reader.get(metadata.key, exact_match_created_at=True)
        assert hit is not None, f"{metadata.key} dangles: GC deleted an object it uses"
        assert np.array_equal(hit.variables["s"], np.arange(50_000))


def test_compaction_merges_segments_and_keeps_entries_and_tombstones(remote: str) -> None:
    store = RemoteStore(remote)
    for n in range(6):
        store.put(Entry(ExecutionKey(f"b{n}", "m"), {"variables": {"n": n}}))
    store.delete_entries([ExecutionKey("b0", "m")])
    report = store.collect_garbage(grace_seconds=3600, recheck_seconds=0)
    assert report.segments_merged == 7
    assert len(list(store.medium.list("log/"))) == 1
    reader = RemoteStore(remote)
    assert sorted(m.key.block_id for m in reader.entries()) == ["b1", "b2", "b3", "b4", "b5"]
    assert reader.get(ExecutionKey("b0", "m")) is None
    assert reader.load_variable(ExecutionKey("b3", "m"), "n") == 3
    store.put(Entry(ExecutionKey("b0", "m"), {"variables": {"n": 0}}))  # a new run
    assert RemoteStore(remote).get(ExecutionKey("b0", "m")) is not None


def test_compaction_while_another_machine_puts_loses_no_entry(remote: str) -> None:
    putter = subprocess.Popen(
        [sys.executable, str(PUTTER), remote, "4"], stdout=subprocess.PIPE, text=True
    )
    compactor = RemoteStore(remote, refresh_interval=0)
    merged = 0
    while putter.poll() is None:
        merged += compactor.collect_garbage(grace_seconds=3600, recheck_seconds=0).segments_merged
    put = int(putter.communicate(timeout=120)[0])
    assert merged > 0 and putter.returncode == 0
    reader = RemoteStore(remote)
    assert len(reader.entries()) == put
    for metadata in reader.entries():
        assert reader.get(metadata.key, exact_match_created_at=True) is not None
