"""`Compactor`: cleanup orchestration, snapshot retention and object GC of one store.

A cleanup is the only way a snapshot is made. Under the local
`modification` lock: merge every head and the log after them, apply the
strategy (and drop entries whose objects are gone), write the new snapshot
and fsync it, then delete the snapshots it replaces, the log segments it
fully holds, and stale temp files; then delete the objects no entry
references any more (object GC, under the exclusive `objects` lock, which
every put that writes files holds shared: docs/cleanup.md). The invariant:
nothing is deleted before the snapshot that supersedes it is durable, and
no object is deleted that a record appended meanwhile references.

Its cost follows what changed: only the log records after the heads are
decoded, the records of entries a head holds unchanged are copied into
the new snapshot byte for byte (only new or changed entries are encoded),
and the cyclic garbage collector is paused while the lock is held.
When a cleanup runs by itself is `_cleanup_trigger.py`'s; this module is
imported at the first cleanup, not with the store.

Implements M1, M2, M5, M8 (docs/format.md §14).
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from functools import partial

from marimo_store import _fs
from marimo_store._cleanup import CleanupReport, DroppedEntry
from marimo_store._cleanup_files import (
    collect_garbage,
    delete_consumed_segments,
    delete_stale_temp_files,
)
from marimo_store._dangling import dangling_since, overdue
from marimo_store._entry import now_ms
from marimo_store._errors import StoreIOError
from marimo_store._format.layout import SNAPSHOT_SUFFIX
from marimo_store._format.segments import writer_of
from marimo_store._hashed_objects import prune_ledgers
from marimo_store._locks import LocalLock
from marimo_store._log import LogReader, writer_is_local
from marimo_store._refresh import apply_record
from marimo_store._retired import in_git_work_tree, remove
from marimo_store._snapshot import (
    SnapshotSet,
    StoreState,
    encode_snapshot,
    merge,
    read_snapshots,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping

    from marimo_store._cleanup import CleanupStrategy
    from marimo_store._cleanup_plan import CleanupPlan
    from marimo_store._entry import EntryMetadata, ExecutionKey
    from marimo_store._format.layout import Layout
    from marimo_store._format.records import StoredEntry
    from marimo_store._options import StoreOptions
    from marimo_store._reader import EntryReader
    from marimo_store._refresh import LiveIndex
    from marimo_store._writer import EntryWriter

_DAY_MS = 86_400_000
_MAX_ANCESTORS = 1000


@contextlib.contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Python's cyclic garbage collector paused for a merge.

    A merge allocates millions of acyclic objects (decoded records), and
    every allocation threshold crossed made the collector walk all of
    them again: 40-55% of a cleanup's time. They are freed by reference
    counting when the merged state goes; the collector runs again after
    (if it ran before: a nested or concurrent pause leaves it to the
    outermost)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _as_planned(
    planned: Mapping[ExecutionKey, str], entries: Collection[EntryMetadata], now: int
) -> dict[ExecutionKey, str]:
    """The strategy of a plan being executed: its choices among `entries`."""
    return {m.key: planned[m.key] for m in entries if m.key in planned}


def _shared_with_other_hosts(state: StoreState, path: str) -> bool:
    """Whether another machine may write this store: a writer on another
    host wrote a segment the merged state knows (snapshots keep the ids of
    consumed segments), or the store lies in a sync tool's folder, where the
    other machines' logs may simply not have arrived yet (their first sync)."""
    if not all(writer_is_local(writer_of(segment)[0]) for segment in state.consumed):
        return True
    from marimo_store._sync_folders import sync_folder_of  # noqa: PLC0415 - object GC only

    return sync_folder_of(path) is not None


class Compactor:
    """Cleans up one store instance's directory (see the module docstring).

    `flush_accesses()` writes this process's waiting access records first,
    so that its hits count for LRU."""

    def __init__(
        self,
        layout: Layout,
        options: StoreOptions,
        live: LiveIndex,
        writer: EntryWriter,
        reader: EntryReader,
        *,
        lock: threading.RLock,
        objects_lock: LocalLock,
        flush_accesses: Callable[[], None],
    ) -> None:
        self._layout = layout
        self._options = options
        self._live = live
        self._writer = writer
        self._reader = reader
        self._lock = lock
        self._objects_lock = objects_lock
        self._modification_lock = LocalLock(layout.modification_lock)
        self._flush_accesses = flush_accesses

    def run(
        self, strategy: CleanupStrategy, include_content: bool, *, dry_run: bool
    ) -> CleanupReport:
        """See `FsPersistentStore.cleanup`: a plan decided and executed under
        one hold of the lock, or (`dry_run`) the plan's report."""
        if dry_run:
            return self.plan(strategy, include_content).report
        return self._execute(strategy, None, include_content)

    def plan(self, strategy: CleanupStrategy, include_content: bool) -> CleanupPlan:
        """See `FsPersistentStore.plan_cleanup`."""
        from marimo_store._cleanup_plan import CleanupPlan  # noqa: PLC0415 - cleanups only

        plan = CleanupPlan(self, include_content=include_content)
        if self._is_store():
            self._under_lock(plan.report, partial(self._plan_locked, strategy, plan))
        return plan

    def execute(self, plan: CleanupPlan) -> CleanupReport:
        """Do what `plan` says, for its entries that are still live."""
        return self._execute(None, plan.decisions, plan.include_content)

    def _is_store(self) -> bool:
        return self._layout.require_store_directory(
            allow_other_files=self._options.allow_other_files
        )

    def _execute(
        self,
        strategy: CleanupStrategy | None,
        planned: Mapping[ExecutionKey, str] | None,
        include_content: bool,
    ) -> CleanupReport:
        report = CleanupReport()
        if not self._is_store():
            return report
        self._flush_accesses()  # so that this process's hits count for LRU
        work = partial(self._clean_up_locked, strategy, planned, include_content, report)
        if self._under_lock(report, work):
            with self._lock:
                self._live.forget_snapshots()  # adopt the new snapshot at the next lookup
                self._writer.wrote_entries = False
        return report

    def _under_lock(self, report: CleanupReport, work: Callable[[], None]) -> bool:
        """Run `work` under the exclusive `modification` lock; False (and why,
        in `report.skipped`) when another process holds it too long."""
        options = self._options
        try:
            with self._modification_lock.hold(
                exclusive=True, timeout=options.lock_timeout
            ) as acquired:
                if not acquired:
                    report.skipped.append(
                        "another process is cleaning up "
                        f"(modification lock busy for {options.lock_timeout:g} s)"
                    )
                    return False
                with _without_cyclic_gc():
                    work()
        except StoreIOError:
            raise
        except OSError as error:  # the lock file included (a read-only copy, a full disk)
            raise StoreIOError(f"cleanup of {options.path} failed: {error}") from error
        return True

    def _temp_path(self) -> str:
        return self._writer.session_for_this_process().temp_path()

    def _decide(
        self,
        live: list[StoredEntry],
        strategy: CleanupStrategy,
        now: int,
        report: CleanupReport,
        *,
        planned: Mapping[ExecutionKey, str] | None = None,
    ) -> dict[ExecutionKey, str]:
        """What goes, and why: the strategy's choice (`planned`: only what a
        plan chose) and the entries that dangled too long; into `report`."""
        decisions = dict(strategy([stored.metadata for stored in live], now))
        # Late is not lost: an entry whose objects are not here (yet) stays,
        # a miss, until it has dangled on this machine for the grace period.
        dangling = [
            s.metadata.key
            for s in live
            if s.metadata.key not in decisions and self._reader.objects_here(s) is False
        ]
        temp_path = None if report.dry_run else self._temp_path()
        since = dangling_since(self._layout.local, dangling, now, temp_path=temp_path)
        decisions.update(overdue(since, now))
        if planned is not None:
            decisions = {key: reason for key, reason in decisions.items() if key in planned}
        goes = {s.metadata.key: s.metadata for s in live if s.metadata.key in decisions}
        report.dropped = [
            DroppedEntry(key, reason, goes[key].content_size) for key, reason in decisions.items()
        ]
        report.entries_kept = len(live) - len(decisions)
        return decisions

    def _plan_locked(self, strategy: CleanupStrategy, plan: CleanupPlan) -> None:
        now = now_ms()
        state, reader, snapshots = self.merged_state()
        live = state.live()
        decisions = self._decide(live, strategy, now, plan.report)
        plan.decisions = decisions
        kept = {
            ref.id
            for stored in live
            if stored.metadata.key not in decisions
            for ref in stored.metadata.objects().values()
        }
        plan.collected = {
            ref.id: ref.size
            for stored in live
            if stored.metadata.key in decisions
            for ref in stored.metadata.objects().values()
            if not ref.inline and ref.id not in kept
        }
        plan.snapshots = [os.path.basename(snapshot.path) for snapshot in snapshots.files]
        plan.segments = {
            name: segment.offset
            for name, segment in reader.segments().items()
            if segment.segment_id
        }

    def _clean_up_locked(
        self,
        strategy: CleanupStrategy | None,
        planned: Mapping[ExecutionKey, str] | None,
        include_content: bool,
        report: CleanupReport,
    ) -> None:
        layout = self._layout
        now = now_ms()
        state, reader, snapshots = self.merged_state()
        live = state.live()
        if planned is not None:
            strategy = partial(_as_planned, planned)
        assert strategy is not None
        decisions = self._decide(live, strategy, now, report, planned=planned)
        for key in decisions:
            state.add_tombstone(key, now)
        dropped = state.dropped  # before the snapshot: what it forgets, GC still knows
        retire = in_git_work_tree(self._options.path)  # never delete under git (see _retired.py)
        self._write_snapshot(state, reader, snapshots, now, report, retire=retire)
        temp = self._writer.session_for_this_process().temp_path
        delete_consumed_segments(
            layout.log, reader.segments(), report, retire=retire, temp_path=temp
        )
        delete_stale_temp_files(layout.tmp, report)
        prune_ledgers(layout.local, self._reader.objects.path_of, self._temp_path())
        if include_content:
            self._collect_garbage(state, dropped, reader, now, report, retire=retire)

    def merged_state(self) -> tuple[StoreState, LogReader, SnapshotSet]:
        """Every head merged, plus every log record after them: the whole
        current state, the log reader that read it, and the snapshot files."""
        snapshots = read_snapshots(self._layout.snapshots)
        state = merge(snapshots.heads)
        reader = LogReader(
            self._layout.log, {segment: offset for segment, (offset, _) in state.consumed.items()}
        )
        for decoded in reader.read_new():
            apply_record(decoded, state)
        return state, reader, snapshots

    def _write_snapshot(
        self,
        state: StoreState,
        reader: LogReader,
        snapshots: SnapshotSet,
        now: int,
        report: CleanupReport,
        *,
        retire: bool,
    ) -> None:
        layout = self._layout
        horizon = now - int(self._options.tombstone_ttl_days * _DAY_MS)
        # Offsets only for segments that still exist: a deleted segment that a
        # sync tool brings back is harmless to re-read (entries are idempotent
        # and tombstones keep dropped keys dropped), and the header stays as
        # small as the set of live segments. A reader's offset is never less
        # than what the heads had consumed (not even for a copy shorter than
        # that: a sync tool still delivering it), so no offset moves back.
        consumed: dict[str, tuple[int, int]] = {}
        for segment in reader.segments().values():
            if segment.segment_id:
                known = max(consumed.get(segment.segment_id, (0, 0))[0], segment.offset)
                consumed[segment.segment_id] = (known, now)
        state.consumed = consumed
        state.tombstones = {k: at for k, at in state.tombstones.items() if at >= horizon}
        # Ancestors tell a snapshot a sync tool resurrects from a head. Bounded
        # by age and count: a resurrected snapshot older than that only brings
        # back entries that are valid (or misses), never wrong ones.
        recent = sorted(state.ancestors.items(), key=lambda item: item[1], reverse=True)
        state.ancestors = {k: at for k, at in recent[:_MAX_ANCESTORS] if at >= horizon}
        session = self._writer.session_for_this_process()
        snapshot_id, data = encode_snapshot(state, writer=session.writer_id, created_at=now)
        from marimo_store._media.local import LocalMedium  # noqa: PLC0415 - loaded when used

        snapshots_medium = LocalMedium(layout.snapshots, temp_path=session.temp_path, durable=True)
        snapshots_medium.replace(snapshot_id + SNAPSHOT_SUFFIX, data)  # W3, M2
        path = snapshots_medium.local_path(snapshot_id + SNAPSHOT_SUFFIX)
        report.snapshot = snapshot_id
        # Only now that the new one is durable. It merges every head, and every
        # other file read is some head's ancestor: all of them are superseded.
        # (A snapshot that arrived after they were read is not in the list.)
        for snapshot in snapshots.files:
            if snapshot.path != path:
                remove(snapshot.path, retire=retire, temp_path=session.temp_path)
                report.snapshots_deleted += 1
        # A damaged snapshot goes to quarantine once it is old: a young one may
        # be another machine's snapshot still arriving through a sync tool.
        old = time.time_ns() - int(self._options.object_grace_seconds * 1e9)
        for damaged in snapshots.damaged:
            with contextlib.suppress(FileNotFoundError):
                seen = os.stat(damaged)
                if max(seen.st_mtime_ns, seen.st_ctime_ns) < old:
                    _fs.makedirs(layout.quarantine)
                    _fs.replace(damaged, layout.quarantine_path(damaged, now))

    def _collect_garbage(
        self,
        state: StoreState,
        dropped: Mapping[ExecutionKey, StoredEntry],
        reader: LogReader,
        started: int,
        report: CleanupReport,
        *,
        retire: bool,
    ) -> None:
        """Object GC (see `collect_garbage`). A drop counts from its tombstone's
        time, but never from later than this cleanup's start (`started`, ms):
        a tombstone from a machine whose clock is ahead must not make a file
        written, reused or delivered since look older than its drop.

        Objects of dropped entries go at once only in a store no other host
        has written to (every segment id the merged state knows is this
        host's) and that no sync tool's folder holds: in a shared store
        another machine may, unseen yet, have reused one by deduplication,
        so they wait `object_grace_seconds` like an object no entry known
        here references."""
        options = self._options
        with self._objects_lock.hold(exclusive=True, timeout=options.lock_timeout) as acquired:
            if not acquired:
                report.skipped.append("object GC: puts held the objects lock; objects kept")
                return
            for decoded in reader.read_new():  # puts that finished meanwhile
                apply_record(decoded, state)
            referenced = {
                ref.id
                for stored in state.entries.values()
                for ref in stored.metadata.objects().values()
                if not ref.inline
            }
            dropped_at: dict[str, int] = {}
            if not _shared_with_other_hosts(state, self._layout.root):
                for key, stored in dropped.items():
                    at = min(state.tombstones.get(key, 0), started)
                    for ref in stored.metadata.objects().values():
                        if not ref.inline:
                            dropped_at[ref.id] = max(at, dropped_at.get(ref.id, 0))
            collect_garbage(
                self._layout.objects,
                referenced,
                dropped_at,
                options.object_grace_seconds,
                report,
                retire=retire,
                temp_path=self._writer.session_for_this_process().temp_path,
            )
