"""`store.verify()` and `verify(repair=True)` on real damage, one kind at a time.

Each case damages a real store the way a disk, a crash, a person or a sync
tool would, then checks: `verify()` names the problem (kind and file);
`verify(repair=True)` says what it did; a second `verify()` reports nothing;
every entry loads with its right values or is a miss, and the entries the
damage did not touch (or that a repair could restore from a copy) still
load. The corruption fuzzer (tests/survival/test_fuzz.py) repeats the
repair-then-clean check over thousands of random mutations.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _layout import (
    log_dir,
    object_ids,
    object_path,
    objects_dir,
    quarantine_dir,
    snapshots_dir,
    tmp_dir,
)

from marimo_store import (
    DefaultCleanupStrategy,
    Entry,
    ExecutionKey,
    FsPersistentStore,
    StoreWarning,
    VerifyReport,
)
from marimo_store._log import host_name

KEEP_ALL = DefaultCleanupStrategy(max_entries_per_block=None, max_entries_per_module=None)
DAY = 86_400


def value_of(i: int) -> dict[str, Any]:
    return {"i": i, "big": f"value {i};" * 400}  # one object file per entry


def key_of(i: int) -> ExecutionKey:
    return ExecutionKey("verify", f"m{i}")


@pytest.fixture
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        yield


def build(root: Path, **options: Any) -> FsPersistentStore:
    """Entries 0-3 in a snapshot, 4-5 in the log after it."""
    store = FsPersistentStore(
        root, object_grace_seconds=0, cleanup_strategy=KEEP_ALL, cleanup_on_exit=False, **options
    )
    for i in range(4):
        store.put(Entry.of(key_of(i), value_of(i)))
    store.close()
    assert store.cleanup().skipped == []
    for i in range(4, 6):
        store.put(Entry.of(key_of(i), value_of(i)))
    store.close()
    assert store.verify().ok
    return store


def object_of(store: FsPersistentStore, i: int) -> Path:
    (metadata,) = [m for m in store.entries() if m.key.module_hash == f"m{i}"]
    return object_path(Path(store.path), metadata.variables["big"].id)


def loads(root: Path, **options: Any) -> dict[int, bool]:
    """Which entries load (with exactly their values; a wrong one fails)."""
    store = FsPersistentStore(root, cleanup_on_exit=False, **options)
    found = {}
    for i in range(6):
        entry = store.get(key_of(i))
        if entry is not None:
            assert dict(entry.variables) == value_of(i), i
        found[i] = entry is not None
    store.close()
    return found


def kinds(report: VerifyReport) -> set[tuple[str, str]]:
    return {(problem.kind, os.path.basename(problem.path)) for problem in report.problems}


def repair_and_recheck(root: Path, *, drop_dangling: bool = False) -> VerifyReport:
    store = FsPersistentStore(root, object_grace_seconds=0, cleanup_on_exit=False)
    report = store.verify(repair=True, drop_dangling=drop_dangling)
    assert report.repaired and report.skipped == []
    assert all(problem.action for problem in report.problems), report.problems
    second = FsPersistentStore(root, cleanup_on_exit=False).verify()
    assert second.problems == [], second.problems
    return report


def flip(path: Path, offset: int = 20) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x40
    path.write_bytes(bytes(data))


# -- objects ---------------------------------------------------------------------------


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize(
    "damage",
    [
        ("bit flip", flip),
        ("truncation", lambda p: os.truncate(p, 100)),
        ("zero-filled block", lambda p: _zero(p, 64, 512)),
        ("garbage", lambda p: p.write_bytes(os.urandom(777))),
    ],
    ids=lambda d: d[0],
)
def test_damaged_object_is_quarantined_and_its_entry_dropped_on_request(
    tmp_path: Path, damage: tuple[str, Callable[[Path], None]]
) -> None:
    root = tmp_path / "store"
    store = build(root)
    path = object_of(store, 1)
    damage[1](path)
    report = store.verify()
    assert ("damaged object", path.name) in kinds(report)
    assert any(p.kind == "dangling entry" and "m1" in p.detail for p in report.problems)
    # A good copy may still arrive: a plain repair keeps the entry (a miss).
    kept = FsPersistentStore(root, cleanup_on_exit=False).verify(repair=True)
    assert [p.action[:5] for p in kept.problems if p.kind == "dangling entry"] == ["kept:"]
    assert any(p.action.startswith("moved to quarantine/") for p in kept.problems)
    repaired = repair_and_recheck(root, drop_dangling=True)
    assert [p.action for p in repaired.problems if p.kind == "dangling entry"] == [
        "dropped (a tombstone in the fresh snapshot)"
    ]
    assert not path.exists()
    assert list(quarantine_dir(root).iterdir())
    assert loads(root) == {0: True, 1: False, 2: True, 3: True, 4: True, 5: True}


QUARANTINED_NAME = re.compile(r"(?P<name>.+)\.(?P<ms>\d{13})")


@pytest.mark.usefixtures("quiet")
def test_reads_and_repairs_name_quarantined_objects_alike(tmp_path: Path) -> None:
    """docs/format.md §3.6: `<full object id>.<ms>`, whoever moves the file."""
    root = tmp_path / "store"
    store = build(root)
    read, repaired = object_of(store, 0), object_of(store, 1)
    flip(read)
    flip(repaired)
    assert loads(root, object_grace_seconds=0)[0] is False  # the read moves it
    FsPersistentStore(root, cleanup_on_exit=False, object_grace_seconds=0).verify(repair=True)
    names = [QUARANTINED_NAME.fullmatch(path.name) for path in quarantine_dir(root).iterdir()]
    assert sorted(match["name"] for match in names if match) == sorted(
        path.parent.name + path.name for path in (read, repaired)
    )


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize(
    "naming", ["{id}.{ms}", "objects{id}.{ms}"], ids=["current", "before-issue-16"]
)
def test_a_needed_object_in_quarantine_is_restored_whatever_its_name(
    tmp_path: Path, naming: str
) -> None:
    """Stores made before one function named quarantined files hold
    `objects<id>.<ms>` from `verify(repair=True)`: still found by its bytes."""
    root = tmp_path / "store"
    store = build(root)
    path = object_of(store, 2)
    quarantine_dir(root).mkdir(exist_ok=True)
    object_id = path.parent.name + path.name
    path.rename(quarantine_dir(root) / naming.format(id=object_id, ms=1795342038988))
    assert ("quarantined object", naming.format(id=object_id, ms=1795342038988)) in kinds(
        store.verify()
    )
    repair_and_recheck(root)
    assert path.is_file()
    assert all(loads(root).values())


def _zero(path: Path, offset: int, length: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(bytes(length))


CONFLICT_NAMES = {
    "Dropbox": "{name} (vm's conflicted copy 2026-11-21)",
    "Syncthing": "{name}.sync-conflict-20261121-101500-ABCDEF1",
    "OneDrive": "{name}-LAPTOP",
    "iCloud": "{name} 2",
    "git": "{name}~HEAD",
}


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("tool", sorted(CONFLICT_NAMES))
@pytest.mark.parametrize("original", ["missing", "present"])
def test_conflicted_copy_of_an_object_goes_to_its_true_name(
    tmp_path: Path, tool: str, original: str
) -> None:
    root = tmp_path / "store"
    store = build(root)
    path = object_of(store, 2)
    copy = path.with_name(CONFLICT_NAMES[tool].format(name=path.name))
    shutil.copyfile(path, copy)
    if original == "missing":
        path.unlink()
    report = store.verify()
    assert ("conflicted copy", copy.name) in kinds(report)
    assert tool in next(p.detail for p in report.problems if p.path == str(copy))
    assert not any(p.kind == "dangling entry" for p in report.problems)  # a repair restores it
    repaired = repair_and_recheck(root)
    (action,) = [p.action for p in repaired.problems if p.path == str(copy)]
    assert action.startswith("moved to objects/" if original == "missing" else "deleted")
    assert path.is_file() and not copy.exists()
    assert all(loads(root).values())


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("read_first", [False, True], ids=["verify", "read-then-verify"])
@pytest.mark.parametrize("mode", ["deduplication", "execution_key_qualified"])
def test_swapped_objects_are_both_put_back(tmp_path: Path, mode: str, read_first: bool) -> None:
    root = tmp_path / "store"
    store = build(root, object_id_mode=mode)
    first, second = object_of(store, 0), object_of(store, 4)
    first_bytes, second_bytes = first.read_bytes(), second.read_bytes()
    first.write_bytes(second_bytes)
    second.write_bytes(first_bytes)
    report = store.verify()
    assert kinds(report) >= {("misnamed object", first.name), ("misnamed object", second.name)}
    if read_first:  # a read cannot tell a swap from damage: both go to quarantine
        assert loads(root, object_grace_seconds=0)[0] is False
        assert loads(root, object_grace_seconds=0)[4] is False
        assert not first.exists() and not second.exists()
        assert {kind for kind, _ in kinds(store.verify())} == {"quarantined object"}
    repair_and_recheck(root)
    assert first.read_bytes() == first_bytes and second.read_bytes() == second_bytes
    assert all(loads(root).values())


@pytest.mark.usefixtures("quiet")
def test_objects_in_the_wrong_place_are_moved_back(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = build(root)
    misplaced = object_of(store, 3)
    object_id = misplaced.parent.name + misplaced.name
    loose = objects_dir(root) / object_id
    misplaced.rename(loose)  # e.g. a person or a tool flattened the fan-out
    report = store.verify()
    assert ("conflicted copy", object_id) in kinds(report)
    repair_and_recheck(root)
    assert misplaced.is_file() and not loose.exists()
    assert all(loads(root).values())


# -- snapshots, segments, generated files ----------------------------------------------


def the_snapshot(root: Path) -> Path:
    (path,) = snapshots_dir(root).glob("*.snap")
    return path


def segments(root: Path) -> list[Path]:
    return sorted(log_dir(root).glob("*.log"))


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("offset", [5, 200, -60, -10])
def test_damaged_snapshot_is_replaced_and_quarantined(tmp_path: Path, offset: int) -> None:
    root = tmp_path / "store"
    store = build(root)
    snapshot = the_snapshot(root)
    flip(snapshot, offset if offset > 0 else snapshot.stat().st_size + offset)
    report = store.verify()
    assert ("damaged snapshot", snapshot.name) in kinds(report)
    repaired = repair_and_recheck(root)
    assert repaired.snapshot is not None
    assert the_snapshot(root).name == f"{repaired.snapshot}.snap"
    # Entries 0-3 lived in the damaged snapshot only: misses now, never wrong.
    found = loads(root)
    assert found[4] and found[5]


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("tool", ["Dropbox", "Syncthing", "OneDrive", "iCloud"])
def test_conflicted_copy_of_a_snapshot_is_absorbed(tmp_path: Path, tool: str) -> None:
    root = tmp_path / "store"
    store = build(root)
    snapshot = the_snapshot(root)
    stem = snapshot.name.removesuffix(".snap")
    copy = snapshot.with_name(CONFLICT_NAMES[tool].format(name=stem) + ".snap")
    shutil.copyfile(snapshot, copy)
    snapshot.unlink()
    assert ("conflicted copy", copy.name) in kinds(store.verify())
    repair_and_recheck(root)
    assert not copy.exists()
    assert all(loads(root).values())


@pytest.mark.usefixtures("quiet")
def test_damaged_segment_keeps_the_records_before_the_damage(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = build(root)
    (segment,) = segments(root)
    flip(segment, segment.stat().st_size - 30)  # inside the last record (entry 5)
    report = store.verify()
    assert ("damaged segment", segment.name) in kinds(report)
    repaired = repair_and_recheck(root)
    assert any("quarantine" in p.action for p in repaired.problems if p.path == str(segment))
    assert not segment.exists()
    assert loads(root) == {0: True, 1: True, 2: True, 3: True, 4: True, 5: False}


@pytest.mark.usefixtures("quiet")
def test_conflicted_copy_of_a_segment_is_deleted_once_consumed(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = build(root)
    (segment,) = segments(root)
    copy = segment.with_name(segment.stem + ".sync-conflict-20261121-101500-ABCDEF1.log")
    shutil.copyfile(segment, copy)
    assert ("conflicted copy", copy.name) in kinds(store.verify())
    repair_and_recheck(root)
    assert not copy.exists()
    assert all(loads(root).values())


@pytest.mark.usefixtures("quiet")
def test_garbage_files_named_like_store_files(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = build(root)
    garbage = {
        log_dir(root) / "vm-1-0123456789ab.0.log": os.urandom(20_000),
        snapshots_dir(root) / ("ab" * 16 + ".snap"): os.urandom(3000),
        objects_dir(root) / "cd" / ("ef" * 15): os.urandom(500),
    }
    for path, data in garbage.items():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    found = kinds(store.verify())
    assert {name for _, name in found} >= {path.name for path in garbage}
    repair_and_recheck(root)
    assert not any(path.exists() for path in garbage)
    assert all(loads(root).values())


@pytest.mark.usefixtures("quiet")
def test_torn_segment_of_a_dead_writer_is_deleted(tmp_path: Path) -> None:
    root = tmp_path / "store"
    build(root)
    (segment,) = segments(root)
    data = segment.read_bytes()
    process = __import__("subprocess").Popen(["true"])
    process.wait()
    dead = log_dir(root) / f"{host_name()}-{process.pid}-0123456789ab.0.log"
    dead.write_bytes(data[:-7])  # a copy of it, torn, as if its writer died mid-append
    fresh = FsPersistentStore(root, cleanup_on_exit=False)
    report = fresh.verify()
    assert ("conflicted copy", dead.name) in kinds(report)  # its header names another writer
    repair_and_recheck(root)
    assert not dead.exists()


@pytest.mark.usefixtures("quiet")
def test_generated_files_are_repaired(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = build(root)
    (root / "format.json").write_bytes(b'{"format": "marimo_sto')
    (root / ".gitignore").write_text("# mine\n*.pyc\nlocks/\n")
    (root / ".gitattributes").write_bytes(bytes(40))
    (root / "format (vm's conflicted copy 2026-11-21).json").write_text("{}")
    found = kinds(store.verify())
    assert found >= {
        ("damaged format.json", "format.json"),
        ("incomplete .gitignore", ".gitignore"),
        ("damaged .gitattributes", ".gitattributes"),
        ("conflicted copy", "format (vm's conflicted copy 2026-11-21).json"),
    }
    repair_and_recheck(root)
    assert (root / "format.json").read_bytes() == b'{"format": "marimo_store", "version": 1}'
    assert (root / ".gitignore").read_text() == "# mine\n*.pyc\nlocks/\ntmp/\nquarantine/\nlocal/\n"
    assert "* binary" in (root / ".gitattributes").read_text()
    assert all(loads(root).values())


@pytest.mark.usefixtures("quiet")
def test_stale_temp_files_are_deleted(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = build(root)
    old = tmp_dir(root) / "someone-else-123-0123456789ab-4.tmp"
    old.write_bytes(b"half an object")
    os.utime(old, (time.time() - 2 * DAY, time.time() - 2 * DAY))
    young = tmp_dir(root) / f"{host_name()}-{os.getpid()}-0123456789ab-5.tmp"
    young.write_bytes(b"being written by a live writer")
    assert kinds(store.verify()) == {("stale temp file", old.name)}
    repair_and_recheck(root)
    assert not old.exists() and young.exists()


# -- the rest --------------------------------------------------------------------------


def test_healthy_store_reports_nothing_and_counts_what_it_checked(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = build(root)
    seen: list[tuple[int, int]] = []
    report = store.verify(progress=lambda done, total: seen.append((done, total)))
    assert report.ok and report.problems == []
    assert report.objects_checked == len(object_ids(root)) == 6
    assert report.entries_checked == 6
    assert report.snapshots_checked == 1 and report.segments_checked == 1
    assert report.bytes_hashed == sum(done for done, _ in seen[-1:])
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1][0] == seen[-1][1] > 0
    # A repair of a healthy store changes nothing but the snapshot.
    before = object_ids(root)
    repaired = store.verify(repair=True)
    assert repaired.problems == [] and repaired.snapshot is not None
    assert object_ids(root) == before


def test_verify_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    report = FsPersistentStore(tmp_path / "nothing-here").verify(repair=True)
    assert report.ok and report.objects_checked == 0
    assert not (tmp_path / "nothing-here").exists()
