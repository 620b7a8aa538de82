"""Hypothesis stateful test: random put/get/cleanup/reopen/corrupt/verify
sequences against an in-memory model.

The model knows, for each key, whether its entry is certainly present,
certainly absent, or unknown (after a file was corrupted). Whatever the
sequence: a read never returns a wrong value; a key the model knows is
present loads, one it knows is absent does not; `verify(repair=True)`
always leaves a store a second `verify()` finds nothing wrong with, and on
a store nobody corrupted finds nothing at all.

MARIMO_STORE_STATEFUL_EXAMPLES sets the number of sequences (default 60).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from marimo_store import (
    DefaultCleanupStrategy,
    Entry,
    EntryMetadata,
    ExecutionKey,
    FsPersistentStore,
    StoreWarning,
)

NAMES = [(block, module) for block in ("x", "y") for module in ("0", "1", "2", "3")]
KEEP_ALL = DefaultCleanupStrategy(max_entries_per_block=None, max_entries_per_module=None)


def value_of(name: tuple[str, str]) -> dict[str, Any]:
    block, module = name
    return {"k": list(name), "big": f"{block}{module};" * (50 + 300 * int(module))}


class DropNames:
    def __init__(self, names: Collection[tuple[str, str]]) -> None:
        self.names = set(names)

    def __call__(self, entries: Collection[EntryMetadata], now_ms: int) -> dict[ExecutionKey, str]:
        return {
            e.key: "dropped by the model"
            for e in entries
            if (e.key.block_id, e.key.module_hash) in self.names
        }


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="marimo-stateful-")) / "store"
        self.present: set[tuple[str, str]] = set()
        self.absent: set[tuple[str, str]] = set(NAMES)
        self.corrupted = False
        self.store = self._open()

    def _open(self) -> FsPersistentStore:
        return FsPersistentStore(
            self.root, refresh_interval=0, object_grace_seconds=0, cleanup_on_exit=False
        )

    @initialize()
    def quiet(self) -> None:
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore", StoreWarning)  # corruption warns, by design

    @rule(name=st.sampled_from(NAMES))
    def put(self, name: tuple[str, str]) -> None:
        self.store.put(Entry.of(ExecutionKey(*name), value_of(name)))
        self.absent.discard(name)
        if self.corrupted:
            return  # a put may reuse (by name) an object file that is damaged
        self.present.add(name)

    @rule(name=st.sampled_from(NAMES))
    def get(self, name: tuple[str, str]) -> None:
        self._check(self.store, name)

    @rule(names=st.sets(st.sampled_from(NAMES), max_size=3), gc=st.booleans())
    def cleanup(self, names: set[tuple[str, str]], gc: bool) -> None:
        report = self.store.cleanup(DropNames(names) if names else KEEP_ALL, include_content=gc)
        assert report.skipped == []
        self.present -= names
        self.absent |= names
        if not self.corrupted:
            assert not [d for d in report.dropped if "missing" in d.reason], report.dropped

    @rule(close=st.booleans())
    def reopen(self, close: bool) -> None:
        if close:
            self.store.close()
        self.store = self._open()

    @precondition(lambda self: self.root.exists())
    @rule(
        pick=st.integers(0, 2**16),
        how=st.sampled_from(["flip", "truncate"]),
        where=st.floats(0, 1, exclude_max=True),
    )
    def corrupt(self, pick: int, how: str, where: float) -> None:
        # The draws never depend on the files (writer ids are random): that
        # keeps Hypothesis' replays of a sequence exact.
        files = sorted(
            path
            for pattern in ("objects/??/*", "log/*.log", "snapshots/*.snap")
            for path in self.root.glob(pattern)
        )
        if not files:
            return
        path = files[pick % len(files)]
        raw = bytearray(path.read_bytes())
        if not raw:
            return
        if how == "flip":
            raw[int(where * len(raw))] ^= 0x20
        else:
            del raw[int(where * len(raw)) :]
        path.write_bytes(bytes(raw))
        self.corrupted = True
        # Anything may now be a miss, and an entry a cleanup dropped may come
        # back (its tombstone was in a snapshot that no longer verifies): by
        # design that is a valid value again, never a wrong one.
        self.present.clear()
        self.absent.clear()

    @rule()
    def verify(self) -> None:
        report = self.store.verify(repair=True)
        assert report.skipped == []
        if not self.corrupted:
            assert report.problems == [], report.problems
        # A plain repair keeps an entry whose objects are gone (they may still
        # arrive: docs/format.md §10.9); here they never will: drop it.
        remaining = self.store.verify().problems
        assert all(p.kind == "dangling entry" for p in remaining), remaining
        if remaining:
            self.store.verify(repair=True, drop_dangling=True)
        assert self.store.verify().problems == []
        self.corrupted = False

    def _check(self, store: FsPersistentStore, name: tuple[str, str]) -> None:
        entry = store.get(ExecutionKey(*name))
        if entry is not None:
            assert dict(entry.variables) == value_of(name), name
        if name in self.present:
            assert entry is not None, f"{name} was put and never dropped, yet is a miss"
        if name in self.absent:
            assert entry is None, f"{name} was dropped, yet loads"

    def teardown(self) -> None:
        try:
            fresh = self._open()
            for name in NAMES:
                self._check(fresh, name)
            fresh.close()
            self.store.close()
        finally:
            shutil.rmtree(self.root.parent, ignore_errors=True)
            if hasattr(self, "_warnings"):
                self._warnings.__exit__(None, None, None)


StoreMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("MARIMO_STORE_STATEFUL_EXAMPLES", "60")),
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreMachine = StoreMachine.TestCase
