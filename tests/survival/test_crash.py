"""Crash-point enumeration: a crash before every file operation of put, cleanup and GC.

SQLite's crash loop, applied to marimo_store: each scenario is one call
(`put` on an empty directory, `put` on a populated store, a `put` of a
5 MiB array (preallocated, and recorded as verified in `local/`),
`cleanup()`, `cleanup(include_content=True)` = object GC), run once to count its file
operations N, then again for every k in 1..N with a crash before operation
k (tests/_faults.py). The crashed store instance is abandoned (never used
again, checked with a weak reference) and its writer id names a process
that no longer exists, as after a real crash. Every k is also run

- `torn`: the crash cuts the k-th operation's write in half (write ops only);
- `lost`: then a power cut (k up to N+1: also after the call returned):
  unsynced data truncated, unsynced creations/renames/deletions undone, and
  the machine boots again (records of the earlier boot vouch for nothing);
- `lost-zeros`: the same, with unsynced bytes read back as zeros;
- `lost-objects`: the power cut spares the log but nothing else (a record
  that reached the disk, the objects it names did not).

After each crash a fresh store must: open; hold every entry either
completely with its right values or not at all (a put: the entries before
it plus perhaps the new one; a cleanup: exactly the entries before it or
exactly those after it); accept the next put and cleanup; and leave no
debris after that cleanup: no file in tmp/, one snapshot, only the new
writer's segment in log/ and, after object GC with no grace, exactly the
objects live entries reference. quarantine/ may keep what damage moved
there (that is its job); a crash with nothing lost must cause no damage
(no StoreWarning) at all, and `verify()` must find nothing; after lost
writes, one `verify(repair=True)` leaves nothing for the next `verify()`.

"Debris" is defined precisely: the temp files, segments (torn or without a
header) and orphan objects a crashed writer leaves. Its temp files and
segments go at the next cleanup because its process is gone (a live
writer's temp files stay until they are a day old); orphan objects go at the
next object GC once older than `object_grace_seconds` (0 here).
"""

from __future__ import annotations

import gc
import os
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from _checks import referenced_objects
from _crashpoints import (
    KEEP_ALL,
    NEXT,
    PLANTED,
    SCENARIOS,
    Scenario,
    build_templates,
    call_instrumented,
    dead_writer_ids,
    fresh_copy,
    open_for,
    read_everything,
    record_operations,
    value_of,
)
from _faults import FileOps, SimulatedCrash
from _layout import object_ids, snapshot_names

import marimo_store._hashed_objects as verified_module
from marimo_store import Entry, ExecutionKey, FsPersistentStore, StoreWarning

VARIANTS = ("crash", "torn", "lost", "lost-zeros", "lost-objects")


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    return build_templates(tmp_path_factory.mktemp("templates"))


def crash(
    scenario: Scenario, root: Path, ops: FileOps
) -> tuple[bool, weakref.ref[FsPersistentStore]]:
    """Run the call on a new instance as a process that dies at the planned
    operation; the instance is abandoned, only a weak reference is returned."""
    store = open_for(scenario, root)
    with dead_writer_ids():
        crashed = isinstance(call_instrumented(scenario, store, ops), SimulatedCrash)
    reference = weakref.ref(store)
    del store
    return crashed, reference


# -- the checks ---------------------------------------------------------------------------


def check_recovery(scenario: Scenario, root: Path, *, damage_allowed: bool) -> None:
    universe = scenario.before | scenario.after | {scenario.new, NEXT}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = open_for(scenario, root)  # opening never raises
        present = read_everything(store, universe)
        assert scenario.allowed(present), (
            f"present {sorted(present)}; before {sorted(scenario.before)}; "
            f"after {sorted(scenario.after)}"
        )
        store.put(Entry.of(ExecutionKey(*NEXT), value_of(*NEXT)))
        report = store.cleanup(KEEP_ALL, include_content=True)
        assert report.skipped == []
        lost = {(d.key.block_id, d.key.module_hash) for d in report.dropped}
        assert not lost & (present | {NEXT}), report.dropped
        live = store.entries()
        # No debris: the dead writer's temp files, segments (torn or not) and
        # orphan objects are gone; the old snapshots too.
        tmp = root / "tmp"
        assert not tmp.exists() or list(tmp.iterdir()) == []
        assert snapshot_names(root) == {f"{report.snapshot}.snap"}
        assert len(list((root / "log").iterdir())) == 1, sorted((root / "log").iterdir())
        # (An entry whose objects a power cut lost dangles, a miss, until the
        # grace of docs/format.md §10.9 ends: its objects may still arrive.)
        assert object_ids(root) <= set(referenced_objects(live))
        if not damage_allowed:
            assert object_ids(root) == set(referenced_objects(live))
        store.close()
        again = open_for(scenario, root)
        assert read_everything(again, universe) == present | {NEXT}
        # verify() finds nothing a crash left; after lost writes, what it
        # finds (a zero-filled .gitignore, say) one repair fixes.
        found = again.verify(repair=damage_allowed, drop_dangling=True).problems
        assert damage_allowed or found == [], found
        assert again.verify().problems == []
        again.close()
    damage = [
        str(w.message)
        for w in caught
        if issubclass(w.category, StoreWarning) and PLANTED not in str(w.message)
    ]
    others = [str(w.message) for w in caught if not issubclass(w.category, StoreWarning)]
    assert not others, others
    if not damage_allowed:
        assert not damage, damage


@contextmanager
def rebooted(power_cut: bool) -> Iterator[None]:
    """After a power cut the machine boots again: a new boot id, so records
    of objects verified in the earlier boot (`local/`) vouch for nothing."""
    if not power_cut:
        yield
        return
    original = verified_module.boot_id
    verified_module.boot_id = lambda: "0123456789abcdef0123456789abcdef"  # type: ignore[assignment]
    try:
        yield
    finally:
        verified_module.boot_id = original


def power_cut(ops: FileOps, variant: str) -> None:
    if variant == "lost":
        ops.power_cut()
    elif variant == "lost-zeros":
        ops.power_cut(zeros=True)
    elif variant == "lost-objects":
        ops.power_cut(keep=lambda path: f"{os.sep}log{os.sep}" in path)


def crash_points(operations: int, variant: str) -> Iterator[int]:
    """k = 1..N, and N+1 (the call completes) when a power cut follows."""
    yield from range(1, operations + 1)
    if variant.startswith("lost"):
        yield operations + 1


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_crash_at_every_operation(
    templates: dict[bool, Path], tmp_path: Path, scenario: Scenario, variant: str
) -> None:
    work = tmp_path / "run"
    log = record_operations(templates, scenario, work)
    operations = len(log)
    assert operations >= 5
    runs = 0
    for k in crash_points(operations, variant):
        if variant == "torn" and log[k - 1][0] != "write_all":
            continue  # only a write can be cut in half
        root = fresh_copy(templates, scenario, work)
        ops = FileOps(shadow_dir=str(work / "shadow"), crash_at=k, torn=variant == "torn")
        crashed, reference = crash(scenario, root, ops)
        assert crashed == (k <= operations), (k, operations)
        gc.collect()
        assert reference() is None, "the crashed store instance is still referenced"
        power_cut(ops, variant)
        try:
            with rebooted(variant.startswith("lost")):
                check_recovery(scenario, root, damage_allowed=variant.startswith("lost"))
        except AssertionError as error:
            raise AssertionError(
                f"{scenario.name}, {variant}, crash before operation {k}/{operations} "
                f"({ops.log[k - 1] if k <= len(ops.log) else 'after the call'}): {error}"
            ) from error
        runs += 1
    print(f"{scenario.name} {variant}: k = 1..{operations}, {runs} crash runs")
    assert runs > 0
