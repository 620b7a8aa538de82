"""`LiveIndex`: a store's in-memory index of every writer's entries, kept current.

The index is merged from the snapshot heads and every writer's log
segments after them (sealed segments with a key index are looked up, not
decoded: docs/format.md §16). A refresh catches up with other writers: a changed
set of snapshot files means a cleanup ran, and the index is rebuilt on the
new heads; otherwise only new log bytes are read. Change notification,
where it runs, spares the refreshes when nothing changed. The invariant:
a lookup that misses has first re-read what other writers may have
written (at most `refresh_interval` ago, or with an event since), so a
put finished elsewhere is seen by the next miss here, even while a
cleanup moves it from the log into a snapshot.

Implements R8 (docs/format.md §14).
"""

from __future__ import annotations

import os
import threading
import time
import weakref

from marimo_store._entry import check_lookup_key
from marimo_store._errors import UnreadableFiles
from marimo_store._format.layout import SNAPSHOT_SUFFIX, scan_real_directory
from marimo_store._format.records import ACCESS_TYPE, KeyRecord, StoredEntry
from marimo_store._index import EntryIndex
from marimo_store._indexed_segments import IndexingLogReader
from marimo_store._snapshot import merge, read_snapshots

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from marimo_store._changes import ChangeNotifier
    from marimo_store._entry import EntryMetadata, ExecutionKey
    from marimo_store._format.layout import Layout
    from marimo_store._options import StoreOptions

    class RecordTarget(Protocol):
        """Where log records are applied: the live index or a cleanup's state."""

        def add_entry(self, stored: StoredEntry) -> None: ...
        def add_tombstone(self, key: ExecutionKey, deleted_at: int) -> None: ...
        def add_access(self, key: ExecutionKey, accessed_at: int, hits: int = 0) -> None: ...


_WATCH_SAFETY_SECONDS = 5.0
"""With change notification, a miss still re-reads after this long: some
file systems (FUSE mounts, container volume mounts) fail to report changes."""
_CATCH_UPS = 3
"""Passes of one refresh while cleanups keep committing between its two
snapshot listings (R8); a later refresh goes on from there."""


def apply_record(decoded: StoredEntry | KeyRecord, target: RecordTarget) -> None:
    """Apply one decoded log record (see `LogReader.read_new`)."""
    if isinstance(decoded, StoredEntry):
        target.add_entry(decoded)
    elif decoded.kind == ACCESS_TYPE:
        target.add_access(decoded.key, decoded.at, decoded.hits)
    else:
        target.add_tombstone(decoded.key, decoded.at)


class LiveIndex:
    """The entry index of one store instance and what keeps it current.

    Every method is called under the store's lock, `lock` (given here for
    `candidates`, which takes it itself). `index` and `log_reader` are
    replaced when a cleanup wrote new snapshots: read them each time."""

    def __init__(self, layout: Layout, options: StoreOptions, lock: threading.RLock) -> None:
        self._layout = layout
        self._options = options
        self._lock = lock
        self.index = EntryIndex()
        self.log_reader = IndexingLogReader(layout.log)
        self.snapshot_names: tuple[str, ...] | None = None
        self._unreadable = UnreadableFiles()
        self._last_refresh = -float("inf")
        self.watch: ChangeNotifier | None = None
        self.watch_unavailable = False
        self._watch_starting = 0
        self.own_writer: tuple[int, str] | None = None
        """`(pid, segment name prefix)` of this instance's writer: a watch
        ignores the events of the process's own appends."""

    def candidates(self, key: ExecutionKey, exact: bool) -> list[StoredEntry]:
        """The runs of `key` (see `EntryIndex.runs`), refreshed first on a miss."""
        check_lookup_key(key, exact)
        with self._lock:
            if self.snapshot_names is None:
                self.refresh()
            found = self.index.runs(key, exact=exact)
            if not found:
                self.refresh(miss=True)
                found = self.index.runs(key, exact=exact)
            return found

    def history(self, key: ExecutionKey) -> list[EntryMetadata]:
        """See `FsPersistentStore.history`."""
        with self._lock:
            self.refresh()
            return [stored.metadata for stored in self.candidates(key, exact=False)]

    def entries(self) -> list[EntryMetadata]:
        """See `FsPersistentStore.entries`."""
        with self._lock:
            self.refresh()
            return sorted(
                (stored.metadata for stored in self.index),
                key=lambda metadata: (metadata.created_at, metadata.key.block_id),
            )

    def refresh_now(self) -> None:
        """Catch up with other writers now, whatever `refresh_interval` says."""
        self._last_refresh = -float("inf")
        self.refresh()

    def forget_snapshots(self) -> None:
        """Rebuild on the snapshot heads at the next lookup (a cleanup wrote one)."""
        self.snapshot_names = None

    def adopt_own_writer(self, pid: int, prefix: str) -> None:
        """This instance's writer in process `pid` names its segments `prefix...`."""
        self.own_writer = (pid, prefix)
        watch = self.watch
        if watch is not None and watch.pid == pid:
            watch.own_segment_prefix = prefix

    def refresh(self, *, miss: bool = False, putting: bool = False) -> None:
        """Catch up with other writers, when they may have written something.

        With change notification (started by the first refresh after a
        miss), only when `log/` or `snapshots/` changed since the last
        refresh, or `_WATCH_SAFETY_SECONDS` passed (for events a file system
        fails to report); otherwise (polling) at most every
        `refresh_interval`, and on every miss when that is 0. A put
        (`putting`: it only orders `created_at` after the runs it knows)
        refreshes at most every `refresh_interval` either way: asking the
        watch costs a few microseconds, and a miss-then-put asked just before.

        A changed set of snapshot files means a cleanup ran: the index is
        rebuilt on the new heads. Otherwise only new log bytes are read.
        """
        now = time.monotonic()
        watch = self.change_watch(start=miss)
        if self.index.base_truncated:
            self.snapshot_names = None  # rebuild without it
        if self.snapshot_names is not None:
            if watch is not None and not putting:
                if not watch.take_change() and now - self._last_refresh < _WATCH_SAFETY_SECONDS:
                    return
            elif now - self._last_refresh < self._options.refresh_interval:
                return
        self._last_refresh = now
        for _ in range(_CATCH_UPS):
            self._catch_up()
            if self.snapshot_names is None or self._listed() in (None, self.snapshot_names):
                break

    def _catch_up(self) -> None:
        """One pass: the snapshots (the index rebuilt if they changed), then
        the log's new bytes.

        A cleanup commits its snapshot before it deletes the segments the
        snapshot consumed (M2). So a pass that listed the snapshots before such
        a commit may find those segments gone when it reads the log; a
        snapshot listing taken after the log was read then differs, and
        `refresh` passes again (R8), rather than missing those entries until
        the next refresh."""
        snapshots = self._layout.snapshots
        try:
            names = self.list_snapshots()
            if names != self.snapshot_names:
                self._reload(names)
            self._unreadable.read(snapshots)
        except OSError as error:  # snapshots/ unreadable right now: go on with what we know
            self._unreadable.failed(snapshots, error)
        reader = self.log_reader
        for decoded in reader.read_new():
            if isinstance(decoded, StoredEntry):
                self.index.add_entry(decoded, reader.reading)
            else:
                apply_record(decoded, self.index)
        for segment in self.log_reader.take_indexed():
            self.index.add_indexed(segment)

    def _listed(self) -> tuple[str, ...] | None:
        """The snapshot files now, or None when they cannot be listed."""
        try:
            return self.list_snapshots()
        except OSError:
            return None

    def change_watch(self, *, start: bool) -> ChangeNotifier | None:
        """The running change notification, or None: poll meanwhile.

        `start` (a miss) starts it in a background thread, so that no call
        waits for watchdog where it is used (off Linux: 40 ms to import, and
        starting or stopping watches can wait for its threads); until it
        runs, misses poll. Not with `refresh_interval=0`: every miss
        refreshes anyway, and an event may arrive a moment after the write
        it reports.
        """
        watch = self.watch
        pid = os.getpid()
        if watch is not None and watch.pid != pid:
            self.watch = watch = None  # inherited through fork(): the parent's
        if watch is not None or not start or self.watch_unavailable:
            return watch
        if self._watch_starting == pid or self._options.refresh_interval == 0:
            return None
        if not os.path.isdir(self._options.path):
            return None  # a directory created later is watched from a later miss on
        self._watch_starting = pid
        threading.Thread(
            target=_start_watching,
            args=(weakref.ref(self),),
            name="marimo_store-watch",
            daemon=True,
        ).start()
        return None

    def list_snapshots(self) -> tuple[str, ...]:
        return tuple(
            sorted(
                e.name
                for e in scan_real_directory(self._layout.snapshots)
                if e.name.endswith(SNAPSHOT_SUFFIX)
            )
        )

    def _reload(self, names: tuple[str, ...]) -> None:
        heads = read_snapshots(self._layout.snapshots, lazy=True).heads if names else []
        if len(heads) == 1:
            self.index = EntryIndex(base=heads[0])
            consumed = heads[0].consumed
        else:
            state = merge(heads)
            self.index = EntryIndex(merged=state)
            consumed = state.consumed
        self.log_reader = IndexingLogReader(
            self._layout.log, {segment: offset for segment, (offset, _) in consumed.items()}
        )
        self.snapshot_names = names


def _start_watching(reference: weakref.ref[LiveIndex]) -> None:
    """Start a store's change notification (in a thread of its own)."""
    from marimo_store._changes import start_change_watch  # noqa: PLC0415

    live = reference()
    path = live._options.path if live is not None else ""
    del live  # not kept alive while the watch starts
    watch = start_change_watch(path) if path else None
    live = reference()
    if live is None or watch is None:
        if watch is not None:
            watch.close()
        if live is not None:
            live.watch_unavailable = True
        return
    weakref.finalize(live, watch.close).atexit = False
    if live.own_writer is not None and live.own_writer[0] == watch.pid:
        watch.own_segment_prefix = live.own_writer[1]
    live.watch = watch
