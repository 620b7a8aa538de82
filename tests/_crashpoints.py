"""The scenarios of the crash and fault-injection tests, and what they share.

A scenario is one call (a put on an empty directory or on a populated
store, a cleanup, a cleanup with object GC) run on a fresh copy of a
template store, with `_fs` instrumented (tests/_faults.py), and the sets of
entries that may be present afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _faults import FileOps, SimulatedCrash, instrumented
from workers import stress as stress_workers

import marimo_store._writer as writer_module
from marimo_store import (
    DefaultCleanupStrategy,
    Entry,
    EntryMetadata,
    ExecutionKey,
    FsPersistentStore,
    StoreError,
    StoreWarning,
)
from marimo_store._log import host_name

KEEP_ALL = DefaultCleanupStrategy(max_entries_per_block=None, max_entries_per_module=None)
TEMPLATE_ENTRIES = 12
PLANTED = "planted-damage"
"""Name part of the damage the populated template carries on purpose."""


def value_of(block: str, module: str) -> dict[str, Any]:
    """The variables of `(block, module)`: inline, object and shared-buffer values."""
    n = int(module[1:])
    value: dict[str, Any] = {"k": [block, module], "n": n}
    if n % 2 == 0:
        value["big"] = f"{block}/{module};" * 300  # an object file of its own
    if n % 3 == 0:
        value["arr"] = stress_workers.pool_array(n % 4)  # an out-of-band buffer, shared by value
    if block == LARGE[0]:  # 5 MiB: preallocated, and remembered as verified
        import numpy as np  # (`local/`)

        value["huge"] = np.arange(5 * 2**20 // 8, dtype=np.int64) * (n + 3)
    return value


def template_name(i: int) -> tuple[str, str]:
    return f"b{i % 3}", f"m{i:02d}"


LARGE = ("large", "m05")
"""The entry of the large-object put scenario."""
NEW = ("new", "m06")
"""The entry the put scenarios store: a new object and a deduplicated buffer."""
NEXT = ("next", "m04")
"""The entry put after the crash."""


class DropSome:
    """Drops m01, m02, m05, m09: tombstones, and objects for GC to delete."""

    MODULES = ("m01", "m02", "m05", "m09")

    def __call__(self, entries: Collection[EntryMetadata], now_ms: int) -> dict[ExecutionKey, str]:
        return {
            e.key: "dropped by the crash test" for e in entries if e.key.module_hash in self.MODULES
        }


class Scenario:
    """One call to crash in, and what may be true after it."""

    def __init__(
        self,
        name: str,
        *,
        populated: bool,
        call: Callable[[FsPersistentStore], object],
        durability: str = "flush",
        drops: bool = False,
        new: tuple[str, str] = NEW,
    ) -> None:
        self.name = name
        self.populated = populated
        self.call = call
        self.durability = durability
        self.new = new
        self.before = {template_name(i) for i in range(TEMPLATE_ENTRIES)} if populated else set()
        self.after = (
            {name for name in self.before if name[1] not in DropSome.MODULES}
            if drops
            else self.before | {new}
        )

    @property
    def is_put(self) -> bool:
        return self.new in self.after

    def allowed(self, present: set[tuple[str, str]]) -> bool:
        if self.is_put:  # a put never loses an entry; its own may or may not be there
            return self.before <= present <= self.after
        return present in (self.before, self.after)  # a cleanup is atomic


def put_new(store: FsPersistentStore) -> object:
    return store.put(Entry.of(ExecutionKey(*NEW), value_of(*NEW)))


def put_large(store: FsPersistentStore) -> object:
    return store.put(Entry.of(ExecutionKey(*LARGE), value_of(*LARGE)))


SCENARIOS = [
    Scenario("first-put", populated=False, call=put_new),
    Scenario("first-put-fsync", populated=False, call=put_new, durability="fsync"),
    Scenario("put", populated=True, call=put_new),
    Scenario("put-fsync", populated=True, call=put_new, durability="fsync"),
    Scenario("put-large", populated=True, call=put_large, new=LARGE),
    Scenario("cleanup", populated=True, call=lambda s: s.cleanup(DropSome()), drops=True),
    Scenario(
        "gc",
        populated=True,
        call=lambda s: s.cleanup(DropSome(), include_content=True),
        drops=True,
    ),
]


# -- the stores ---------------------------------------------------------------------------


def build_template(root: Path) -> None:
    """12 entries: 8 in a snapshot, 4 in the log after it, both writers closed;
    plus what a cleanup has to deal with: a stale temp file of a dead writer,
    an unreferenced object, and a damaged snapshot old enough for quarantine."""
    first = FsPersistentStore(root, cleanup_on_exit=False)
    for i in range(8):
        first.put(Entry.of(ExecutionKey(*template_name(i)), value_of(*template_name(i))))
    first.close()
    assert first.cleanup(KEEP_ALL).skipped == []
    second = FsPersistentStore(root, cleanup_on_exit=False)
    for i in range(8, TEMPLATE_ENTRIES):
        second.put(Entry.of(ExecutionKey(*template_name(i)), value_of(*template_name(i))))
    second.close()
    (root / "tmp" / f"{host_name()}-{dead_pid()}-0123456789ab-7.tmp").write_bytes(b"left over")
    orphan = "ab" * 16
    (root / "objects" / orphan[:2]).mkdir(exist_ok=True)
    (root / "objects" / orphan[:2] / orphan[2:]).write_bytes(b"nobody refers to me")
    (root / "snapshots" / f"{PLANTED}.snap").write_bytes(b"\x00" * 100)


_DEAD_PID: list[int] = []


def dead_pid() -> int:
    """The pid of a process that has exited (a crashed writer's)."""
    if not _DEAD_PID:
        process = subprocess.Popen([sys.executable, "-c", ""])
        process.wait()
        _DEAD_PID.append(process.pid)
    return _DEAD_PID[0]


def build_templates(base: Path) -> dict[bool, Path]:
    """The populated template (built once) and the path of the empty one."""
    populated = base / "populated"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)  # the planted snapshot
        build_template(populated)
    return {True: populated, False: base / "empty"}


def fresh_copy(templates: dict[bool, Path], scenario: Scenario, work: Path) -> Path:
    if work.exists():
        shutil.rmtree(work)
    (work / "shadow").mkdir(parents=True)
    root = work / "store"
    if scenario.populated:
        # Hard links: the calls never change a file in place (files are
        # replaced or appended to only by the writer that created them).
        shutil.copytree(templates[True], root, copy_function=os.link)
    return root


def open_for(scenario: Scenario, root: Path) -> FsPersistentStore:
    return FsPersistentStore(
        root,
        durability=scenario.durability,  # type: ignore[arg-type]
        cleanup_on_exit=False,
        object_grace_seconds=0,
        refresh_interval=0,
        lock_timeout=1,
    )


@contextmanager
def dead_writer_ids() -> Iterator[None]:
    """Writer ids created meanwhile name a process that has exited, as a
    crashed process's do once it is gone."""
    original = writer_module.new_writer_id
    pid = dead_pid()
    writer_module.new_writer_id = lambda: f"{host_name()}-{pid}-{os.urandom(6).hex()}"
    try:
        yield
    finally:
        writer_module.new_writer_id = original


def call_instrumented(
    scenario: Scenario, store: FsPersistentStore, ops: FileOps
) -> SimulatedCrash | StoreError | None:
    """Run the scenario's call on `store` under `ops`; how it ended."""
    with instrumented(ops), warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)  # the planted snapshot
        try:
            scenario.call(store)
        except (SimulatedCrash, StoreError) as error:
            return error
    return None


def record_operations(
    templates: dict[bool, Path], scenario: Scenario, work: Path
) -> list[tuple[str, str]]:
    """The file operations the scenario's call performs, in order."""
    root = fresh_copy(templates, scenario, work)
    ops = FileOps(shadow_dir=str(work / "shadow"))
    store = open_for(scenario, root)
    assert call_instrumented(scenario, store, ops) is None
    store.close()
    return ops.log


def read_everything(store: FsPersistentStore, names: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The names that load; each must load with exactly its values."""
    present = set()
    for block, module in sorted(names):
        entry = store.get(ExecutionKey(block, module))
        if entry is None:
            continue
        problem = stress_workers.mismatch(entry.variables, value_of(block, module))
        assert problem is None, f"{block}/{module}: {problem}"
        present.add((block, module))
    return present
