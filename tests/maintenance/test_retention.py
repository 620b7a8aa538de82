"""What a store keeps, measured on disk after real processes exit.

- a size limit bounds the bytes on disk once the automatic cleanup at exit
  ran (it collects the objects of the entries it dropped);
- the default strategy never thins out a sweep that fits the size limit;
- objects a sync tool delivers before their log survive every cleanup until
  the log arrives (the grace runs from when this machine first saw them);
- the objects of dropped entries go at once in a store only this machine
  writes, and wait the grace in one another machine writes too.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from _checks import referenced_objects
from _layout import log_dir, object_ids, objects_dir, snapshots_dir
from _scripts import run_python as run_script

from marimo_store import CleanupReport, Entry, ExecutionKey, FsPersistentStore, _log

TIMEOUT = 300
SLACK_BYTES = 64 * 1024
"""What a store holds besides the content a size limit counts: its log,
snapshot, `format.json` and ledgers (a few hundred bytes per entry)."""


def run_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_script(script, *args, timeout=TIMEOUT)
    assert "Warning" not in result.stderr, result.stderr
    return result


def bytes_under(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


BIG_RESULTS = """
import os, sys
from marimo_store import DefaultCleanupStrategy, Entry, ExecutionKey, FsPersistentStore
store = FsPersistentStore(
    sys.argv[1], cleanup_strategy=DefaultCleanupStrategy(max_total_content_size="1MB")
)
for i in range(4):
    store.put(Entry.of(ExecutionKey("big", f"m{i}"), {"data": os.urandom(800_000)}))
# exits without cleanup(): the automatic cleanup at exit must bound the disk
"""


def test_a_size_limit_bounds_the_disk_after_the_exit_cleanup(store_path: Path) -> None:
    run_python(BIG_RESULTS, str(store_path))
    objects = bytes_under(objects_dir(store_path))
    assert objects <= 1_000_000, f"{objects} bytes of objects for a 1 MB limit"
    assert bytes_under(store_path) <= 1_000_000 + SLACK_BYTES
    store = FsPersistentStore(store_path, cleanup_on_exit=False)
    (kept,) = store.entries()
    assert kept.key.module_hash == "m3"  # the least recently used went
    entry = store.get(kept.key)
    assert entry is not None and len(entry.variables["data"]) == 800_000


SWEEP = """
import sys
from marimo_store import FsPersistentStore, persistent_cache
store = FsPersistentStore(sys.argv[1])

@persistent_cache(store=store)
def square(x):
    return x * x

for i in range(int(sys.argv[2])):
    square(i)
"""

HITS = """
import sys
from marimo_store import FsPersistentStore, persistent_cache
store = FsPersistentStore(sys.argv[1], cleanup_on_exit=False)

@persistent_cache(store=store)
def square(x):
    return x * x

for i in range(0, int(sys.argv[2]), 997):
    assert square(i) == i * i
info = square.cache_info()
print(info.hits, info.misses)
"""


def test_a_process_storing_100000_small_results_leaves_all_of_them(store_path: Path) -> None:
    calls = 100_000
    run_python(SWEEP, str(store_path), str(calls))
    snapshots = list(snapshots_dir(store_path).glob("*.snap"))
    assert len(snapshots) == 1  # the exit cleanup ran ...
    store = FsPersistentStore(store_path, cleanup_on_exit=False)
    assert len(store.entries()) == calls  # ... and dropped nothing
    store.close()
    hits = run_python(HITS, str(store_path), str(calls))
    assert hits.stdout.split() == [str(len(range(0, calls, 997))), "0"]


REMOTE_PUTS = """
import sys
from marimo_store import Entry, ExecutionKey, FsPersistentStore
store = FsPersistentStore(sys.argv[1], cleanup_on_exit=False)
for i in range(3):
    store.put(Entry.of(ExecutionKey("remote", f"m{i}"), {"text": f"remote {i} " * 500}))
store.close()
"""

LOCAL_WORK = """
import json, sys
from marimo_store import Entry, ExecutionKey, FsPersistentStore
store = FsPersistentStore(sys.argv[1])
store.put(Entry.of(ExecutionKey("local", sys.argv[2]), {"text": "local " * 500}))
report = store.cleanup()
print(json.dumps({"spared": report.objects_spared, "reasons": report.spared,
                  "deleted": report.objects_deleted}))
# exits: the exit cleanup runs object GC once more
"""

READ_REMOTE = """
import sys
from marimo_store import ExecutionKey, FsPersistentStore
store = FsPersistentStore(sys.argv[1], cleanup_on_exit=False)
for i in range(3):
    entry = store.get(ExecutionKey("remote", f"m{i}"))
    assert entry is not None, f"remote m{i} is a miss"
    assert entry.variables["text"] == f"remote {i} " * 500
print("ok")
"""


def copy_preserving_times(source: Path, target: Path) -> None:
    """`cp -a source/. target/`: old mtimes kept, as `rsync -a` and sync tools do."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", f"{source}/.", str(target)], check=True)


def test_objects_delivered_before_their_log_survive_cleanups(tmp_path: Path) -> None:
    """A sync tool delivers `objects/` first, with old mtimes (`cp -a`, `rsync -a`);
    cleanups on this machine, automatic ones included, must keep them until
    the log arrives, which then makes every remote entry a hit."""
    remote, here = tmp_path / "remote", tmp_path / "here"
    run_python(REMOTE_PUTS, str(remote))
    remote_objects = object_ids(remote)
    assert len(remote_objects) == 3
    long_ago = time.time() - 7 * 86_400  # written a week ago on the other machine
    for path in objects_dir(remote).glob("??/*"):
        os.utime(path, (long_ago, long_ago))
    run_python(LOCAL_WORK, str(here), "before")

    copy_preserving_times(objects_dir(remote), objects_dir(here))
    report = run_python(LOCAL_WORK, str(here), "between").stdout
    assert '"spared": 3' in report and "object_grace_seconds (3600 s)" in report, report
    assert remote_objects <= object_ids(here)  # kept by the explicit and the exit cleanup

    copy_preserving_times(log_dir(remote), log_dir(here))
    assert run_python(READ_REMOTE, str(here)).stdout.strip() == "ok"
    run_python(LOCAL_WORK, str(here), "after")
    assert remote_objects <= object_ids(here)  # referenced now
    store = FsPersistentStore(here, cleanup_on_exit=False)
    assert set(referenced_objects(store.entries())) == object_ids(here)


def test_dropped_objects_go_at_once_while_unknown_ones_wait(store_path: Path) -> None:
    """`delete_entries` then an automatic-style cleanup: the objects of the
    deleted entries go at once, whatever `object_grace_seconds` says."""
    store = FsPersistentStore(store_path, cleanup_on_exit=False)
    keys = [
        store.put(Entry.of(ExecutionKey("f", f"m{i}"), {"text": f"{i} " * 1000})).key
        for i in range(3)
    ]
    assert len(object_ids(store_path)) == 3
    assert store.delete_entries(keys[:2]) == 2
    report = store.cleanup()
    assert report.objects_deleted == 2 and report.spared == []
    assert object_ids(store_path) == set(referenced_objects(store.entries()))
    store.close()


def put_three_drop_two(store: FsPersistentStore) -> CleanupReport:
    """Three entries with objects of their own; drop two and clean up."""
    keys = [
        store.put(Entry.of(ExecutionKey("f", f"m{i}"), {"text": f"{i} " * 1000})).key
        for i in range(3)
    ]
    assert store.delete_entries(keys[:2]) == 2
    return store.cleanup()


def test_in_a_store_another_host_writes_dropped_objects_wait_the_grace(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store synced between machines: another machine may have reused a
    dropped entry's object by deduplication before its record arrives here,
    so the object waits `object_grace_seconds` like an unknown one."""
    with monkeypatch.context() as patched:
        patched.setattr(_log, "host_name", lambda: "another-machine")
        remote = FsPersistentStore(store_path, cleanup_on_exit=False)
        remote.put(Entry.of(ExecutionKey("remote", "m0"), {"text": "remote " * 1000}))
        remote.close()
    store = FsPersistentStore(store_path, cleanup_on_exit=False)
    report = put_three_drop_two(store)
    assert report.objects_deleted == 0 and report.objects_spared == 2, report
    assert len(object_ids(store_path)) == 4
    store.close()
    impatient = FsPersistentStore(store_path, cleanup_on_exit=False, object_grace_seconds=0)
    assert impatient.cleanup().objects_deleted == 2
    assert object_ids(store_path) == set(referenced_objects(impatient.entries()))
    impatient.close()


@pytest.mark.parametrize(
    ("folder", "marker"),
    [("Dropbox", ".dropbox"), ("Sync", ".stfolder"), ("CloudStorage/OneDrive-Personal", None)],
)
def test_in_a_sync_folder_dropped_objects_wait_the_grace_before_other_logs_arrive(
    tmp_path: Path, folder: str, marker: str | None
) -> None:
    """Before another machine's first log arrives, a store in a sync tool's
    folder looks written by this host alone; but the tool propagates a
    deletion to every copy, so an object deleted at once would vanish on a
    machine that reused it (found by the sync simulator, seed 20415)."""
    synced = tmp_path / folder
    synced.mkdir(parents=True)
    if marker is not None:
        (synced / marker).touch()
    store = FsPersistentStore(synced / "store", cleanup_on_exit=False)
    report = put_three_drop_two(store)
    assert report.objects_deleted == 0 and report.objects_spared == 2, report
    assert len(object_ids(synced / "store")) == 3
    assert "sync-folder" in {finding.code for finding in store.doctor()}
    store.close()
