"""Late is not lost: what a sync tool has not delivered yet, or what cannot
be read for a while, is never dropped or deleted (docs/format.md §10.9).

With real rsync, in the orders sync tools use:
- log first (rsync copies `log/` before `objects/`): the receiving machine
  cleans up (with object GC) before the objects arrive; the entry and a
  named object are misses meanwhile and load on both machines afterwards;
- objects first: object GC runs between the objects and the log record
  that references them; the objects are spared (their ctime is their
  arrival here), and the entry loads once the log arrives.
An entry that dangles for longer than the grace on this machine is dropped
(and only then); objects that cannot be read (EACCES) cost misses with a
warning, never an entry; `verify(repair=True)` keeps dangling entries unless
told to drop them.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import marimo_store._fs as fs
from marimo_store import Entry, ExecutionKey, FsPersistentStore, NotFoundError, StoreWarning
from marimo_store._dangling import DANGLING_GRACE_DAYS, dangling_since, read_first_seen
from marimo_store._entry import now_ms

KEY = ExecutionKey("train", "m1")
MODEL = [float(i) for i in range(4000)]


@pytest.fixture(autouse=True)
def _hermetic(home: Path) -> None:
    """Every test runs with its own empty HOME (see conftest.home)."""


def rsync(*arguments: str) -> None:
    tool = shutil.which("rsync")
    assert tool, "rsync is not installed: .ci/run installs it (apt-get install rsync)"
    subprocess.run([tool, "-a", *arguments], check=True, capture_output=True, timeout=120)


def value() -> dict[str, Any]:
    return {"weights": "w;" * 3000, "epochs": 3}


def open_store(root: Path, **options: Any) -> FsPersistentStore:
    return FsPersistentStore(root, cleanup_on_exit=False, **options)


def machine_a(root: Path) -> None:
    store = open_store(root)
    store.put(Entry.of(KEY, value()))
    store.save("model", MODEL)
    store.close()


def loads_everything(root: Path) -> None:
    store = open_store(root)
    entry = store.get(KEY)
    assert entry is not None and dict(entry.variables) == value()
    assert store.load("model") == MODEL
    store.close()


@pytest.fixture
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        yield


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("gc", [False, True], ids=["cleanup", "cleanup+gc"])
def test_log_before_objects_with_cleanup_between_loses_nothing(tmp_path: Path, gc: bool) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    machine_a(a)
    rsync("--exclude", "objects/", f"{a}/", f"{b}/")  # the log (and snapshots) arrive first
    store = open_store(b)
    assert store.get(KEY) is None  # dangling: a miss
    with pytest.raises(NotFoundError):
        store.load("model")
    report = store.cleanup(include_content=gc)
    assert report.dropped == [] and report.entries_kept == 2, report
    assert store.cleanup(include_content=gc).dropped == []  # again: still within the grace
    store.close()
    rsync(f"{a}/", f"{b}/")  # the objects arrive
    rsync(f"{b}/", f"{a}/")  # and B's snapshot goes back to A
    loads_everything(a)
    loads_everything(b)
    # The objects arrived: this machine forgets it saw them dangle.
    open_store(b).cleanup()
    assert read_first_seen(str(b / "local")) == {}


@pytest.mark.usefixtures("quiet")
def test_objects_before_log_with_gc_between_loses_nothing(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    machine_a(a)
    old = now_ms() / 1000 - 7200  # written two hours ago on A: older than the grace
    for path in (a / "objects").rglob("*"):
        if path.is_file():
            os.utime(path, (old, old))
    b.mkdir()
    rsync(f"{a}/objects/", f"{b}/objects/")  # rsync -a keeps the old mtime
    assert min(p.stat().st_mtime for p in (b / "objects").rglob("*") if p.is_file()) < old + 1
    report = open_store(b).cleanup(include_content=True)
    assert report.objects_deleted == 0, report  # ctime: they arrived just now
    rsync(f"{a}/", f"{b}/")
    loads_everything(b)
    # Control: with no grace, the same GC would have deleted them.
    c = tmp_path / "c"
    c.mkdir()
    rsync(f"{a}/objects/", f"{c}/objects/")
    assert open_store(c, object_grace_seconds=0).cleanup(include_content=True).objects_deleted


@pytest.mark.usefixtures("quiet")
def test_an_entry_dangling_longer_than_the_grace_is_dropped(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    machine_a(a)
    rsync("--exclude", "objects/", f"{a}/", f"{b}/")
    store = open_store(b)
    assert store.cleanup().dropped == []
    since = read_first_seen(str(b / "local"))
    assert set(since) == {m.key for m in store.entries()} and len(since) == 2
    # Pretend this machine first saw them dangle just over the grace ago.
    long_ago = now_ms() - DANGLING_GRACE_DAYS * 86_400_000 - 1
    local = str(b / "local")
    os.unlink(os.path.join(local, os.listdir(local)[0]))
    dangling_since(local, list(since), long_ago, temp_path=str(b / "tmp" / "rewrite"))
    report = store.cleanup(dry_run=True)
    assert {d.key for d in report.dropped} == set(since)
    assert all(f"more than {DANGLING_GRACE_DAYS} days" in d.reason for d in report.dropped)
    assert {d.key for d in store.cleanup().dropped} == set(since)
    assert store.entries() == []


def test_unreadable_objects_are_misses_and_nothing_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    store = open_store(root)
    keys = [ExecutionKey(f"b{i}", "m") for i in range(20)]
    for key in keys:
        store.put(Entry.of(key, {"v": key.block_id * 2000}))
    store.close()
    objects = str(root / "objects")
    real_stat, real_open = fs.stat, fs.open_read

    def denied(real: Any) -> Any:
        def call(path: str) -> Any:
            if path.startswith(objects):
                raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
            return real(path)

        return call

    monkeypatch.setattr(fs, "stat", denied(real_stat))
    monkeypatch.setattr(fs, "open_read", denied(real_open))
    reader = open_store(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert reader.get(keys[0]) is None
    assert [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    assert any("Permission denied" in str(w.message) for w in caught)
    report = reader.cleanup(include_content=True)
    assert report.dropped == [] and report.entries_kept == 20
    monkeypatch.setattr(fs, "stat", real_stat)
    monkeypatch.setattr(fs, "open_read", real_open)
    fresh = open_store(root)
    assert all(fresh.get(key) is not None for key in keys)


@pytest.mark.usefixtures("quiet")
def test_verify_repair_keeps_dangling_entries_unless_told(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    machine_a(a)
    rsync("--exclude", "objects/", f"{a}/", f"{b}/")
    report = open_store(b).verify(repair=True)
    dangling = [p for p in report.problems if p.kind == "dangling entry"]
    assert len(dangling) == 2 and all(p.action.startswith("kept") for p in dangling)
    rsync(f"{a}/", f"{b}/")
    loads_everything(b)
    assert open_store(b).verify().problems == []

    c = tmp_path / "c"
    rsync("--exclude", "objects/", f"{a}/", f"{c}/")
    report = open_store(c).verify(repair=True, drop_dangling=True)
    assert [p.action for p in report.problems if p.kind == "dangling entry"] == [
        "dropped (a tombstone in the fresh snapshot)"
    ] * 2
    assert open_store(c).entries() == []


def test_rsync_log_before_objects_round_after_round(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two machines, each round: both put (runs and a named object), rsync
    sends `log/` (and `snapshots/`) first, the receiver cleans up (object GC
    every other round, a zero grace for what is unreferenced: the worst
    case), then the objects follow; every put that returned loads, with its
    value, on both machines (`--rsync-rounds N`)."""
    a, b = tmp_path / "a", tmp_path / "b"
    machines = {"a": a, "b": b}
    ledger: dict[ExecutionKey, dict[str, Any]] = {}
    named: dict[str, list[float]] = {}
    rounds = request.config.getoption("--rsync-rounds")
    for round_number in range(rounds):
        for name, root in machines.items():
            other = b if root == a else a
            store = open_store(root)
            for i in range(2):
                value = {"round": round_number, "data": f"{name}{round_number}{i};" * 300}
                key = store.put(Entry.of(ExecutionKey(f"{name}{round_number}-{i}", "m"), value)).key
                ledger[key] = value
            named[f"model-{name}"] = [float(round_number)] * 500
            store.save(f"model-{name}", named[f"model-{name}"])
            store.close()
            other.mkdir(exist_ok=True)
            rsync("--exclude", "objects/", f"{root}/", f"{other}/")  # rsync's order: log first
            receiver = open_store(other, object_grace_seconds=0)
            report = receiver.cleanup(include_content=round_number % 2 == 1)
            assert not [d for d in report.dropped if "missing" in d.reason], report.dropped
            receiver.close()
            rsync(f"{root}/", f"{other}/")  # then the objects
    rsync(f"{a}/", f"{b}/")
    rsync(f"{b}/", f"{a}/")
    lost = wrong = 0
    for root in machines.values():
        store = open_store(root)  # a failed open would raise here
        for key, value in ledger.items():
            entry = store.get(key, exact_match_created_at=True)
            lost += entry is None
            wrong += entry is not None and dict(entry.variables) != value
        for name, model in named.items():
            wrong += store.load(name) != model
        store.close()
    print(f"rsync log first: {rounds} rounds, {len(ledger)} puts, {lost} lost, {wrong} wrong")
    assert (lost, wrong) == (0, 0)
