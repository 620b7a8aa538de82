"""What a cleanup deletes: unreferenced objects, consumed log segments and
stale temp files, each by its own rule, never more.

The doing half of cleanup as a plan: `_cleanup.py` decides (a pure strategy
over entry metadata, tested without files); `_compaction.py` executes a
`CleanupPlan` and calls these functions, in the order of docs/cleanup.md,
only once the new snapshot is durable. The invariant each keeps: a file is
deleted only when no reader can still need it and it did not change since
it was judged (each is stat'ed again right before it goes); under git it is
retired instead (`_retired.py`). `stale_temp_files` also serves `verify()`
and `doctor()`, which report the same files.

Implements M3, M5, M7 (docs/format.md §14).
"""

from __future__ import annotations

import os
import time

from marimo_store import _fs
from marimo_store._format.layout import scan_real_directory
from marimo_store._format.objects import ObjectNames
from marimo_store._format.segments import writer_of, writer_of_file
from marimo_store._log import is_sealed, newest_segments, writer_is_gone, writer_is_local
from marimo_store._retired import is_retired, remove

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping

    from marimo_store._cleanup import CleanupReport
    from marimo_store._log import SegmentState

_DROP_SLACK_NS = 1_000_000_000
"""File times within a second after a drop still count as before it: file
system timestamps can run slightly ahead of the clock that stamped the
drop. Puts in flight here are kept by the objects lock, not by this."""
_STALE_TEMP_SECONDS = 86_400


def collect_garbage(
    objects_dir: str,
    referenced: Collection[str],
    dropped: Mapping[str, int],
    grace_seconds: float,
    report: CleanupReport,
    *,
    retire: bool,
    temp_path: Callable[[], str],
) -> None:
    """Delete (`retire`: retire, see `_retired.py`) the objects no live
    entry references, by the rule of docs/format.md §10.7.

    Called under the exclusive objects lock, after re-reading the log: a put
    holds the shared lock from writing (or reusing) its objects until its
    record is appended, so no put is in flight here and every finished one
    is in `referenced`. What is left unreferenced is of two kinds:

    - `dropped` (object id -> when its last referencing entry was dropped,
      ms): objects of entries this store knew and dropped. They go at once,
      unless the file was written, touched by a deduplicating put or
      delivered by a sync tool after the drop: then somebody may use it
      again, and it waits like an unknown one.
    - unknown objects: maybe another machine's put whose log has not arrived
      yet (sync tools can deliver `objects/` before `log/`, and `rsync -a`
      keeps old mtimes). They go only once `grace_seconds` passed since this
      machine first saw them: by mtime *and* ctime, which a delivery sets.

    Each file is stat'ed again right before it is deleted and spared if it
    changed. What is spared is counted in the report, with the reason.
    """
    grace_ns = int(grace_seconds * 1e9)
    young = _Spared()
    for path, object_id in ObjectNames(objects_dir).stored():
        if object_id in referenced:
            continue
        try:
            seen = os.stat(path)
            seen_ns = max(seen.st_mtime_ns, seen.st_ctime_ns)
            dropped_at = dropped.get(object_id)
            unused_since_drop = (
                dropped_at is not None and seen_ns < dropped_at * 1_000_000 + _DROP_SLACK_NS
            )
            if not unused_since_drop and time.time_ns() - seen_ns < grace_ns:
                young.add(seen.st_size)
                continue
            if is_retired(path, seen.st_size):
                continue
            now = os.stat(path)
        except FileNotFoundError:
            continue
        if (now.st_ino, now.st_size, now.st_mtime_ns, now.st_ctime_ns) != (
            seen.st_ino,
            seen.st_size,
            seen.st_mtime_ns,
            seen.st_ctime_ns,
        ):
            continue
        remove(path, retire=retire, temp_path=temp_path)
        report.objects_deleted += 1
        report.bytes_freed += seen.st_size
    if young.count:
        report.objects_spared += young.count
        report.bytes_spared += young.size
        report.spared.append(
            f"{young.count} objects ({young.size} bytes) that no entry known here references, "
            f"first seen here less than object_grace_seconds ({grace_seconds:g} s) ago: they may "
            "belong to another machine's entries whose log has not arrived yet"
        )


class _Spared:
    """A count of spared objects and their bytes."""

    __slots__ = ("count", "size")

    def __init__(self) -> None:
        self.count = 0
        self.size = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.size += size


def delete_consumed_segments(
    log_dir: str,
    segments: Mapping[str, SegmentState],
    report: CleanupReport,
    *,
    retire: bool,
    temp_path: Callable[[], str],
) -> None:
    """Delete segments that are sealed and whose every readable byte a snapshot holds.

    Sealed means no more appends can come: the writer closed it, moved on
    to a later segment, or (on this host) its process is gone. A sealed
    segment of this host is final as it stands, so a torn tail (a write cut
    short by a crash or a full disk) does not keep it alive; one of another
    host may still be arriving through a sync tool, so it goes only once
    every byte was read and it is at least as long as what a snapshot
    already holds of it (a shorter copy is still arriving, or is an old copy
    the newer one will replace). A file named after a dead writer of this
    host that never got its header (the writer died creating it) goes too.
    `retire`: retire them instead (a store in git, see `_retired.py`).
    """
    newest = newest_segments(state.segment_id for state in segments.values() if state.segment_id)
    for name, state in segments.items():
        if not state.segment_id:
            owner = writer_of_file(name)
            path = os.path.join(log_dir, name)
            if owner is not None and writer_is_gone(owner) and not is_retired(path, state.size):
                remove(path, retire=retire, temp_path=temp_path)
                report.segments_deleted += 1
            continue
        if not is_sealed(state.segment_id, state.closed, newest):
            continue
        local = writer_is_local(writer_of(state.segment_id)[0])
        if (state.offset < state.size or state.behind) and not local:
            continue  # another host's segment still arriving: the rest may follow
        path = os.path.join(log_dir, name)
        try:
            if os.stat(path).st_size != state.size:
                continue  # changed since it was read: keep it for the next cleanup
        except FileNotFoundError:
            continue
        remove(path, retire=retire, temp_path=temp_path)
        report.segments_deleted += 1


def stale_temp_files(tmp_dir: str) -> Iterator[tuple[str, str]]:
    """`(path, why)` of every temp file no writer will finish: its writer
    died (on this host), or it is more than a day old."""
    items = scan_real_directory(tmp_dir)
    horizon = time.time() - _STALE_TEMP_SECONDS
    for item in items:
        try:
            old = item.stat().st_mtime < horizon
        except FileNotFoundError:
            continue
        if not item.is_file():
            continue
        if old:
            yield item.path, "older than a day"
        elif writer_is_gone(item.name.rsplit("-", 1)[0]):
            yield item.path, "its writer is gone"


def delete_stale_temp_files(tmp_dir: str, report: CleanupReport) -> None:
    """Remove the temp files that `stale_temp_files` names."""
    for path, _ in stale_temp_files(tmp_dir):
        _fs.unlink(path)
        report.temp_files_deleted += 1
