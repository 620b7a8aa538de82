"""Step 2 of `verify()` (`_verify.py`): snapshots byte for byte, segments record by record.

Opening a snapshot checks only its header, table and footer; this pass
checks every byte (`SnapshotFile.deep_damage`), and reads every segment a
window at a time, checking each record against the format. What it finds
damaged, torn or copied by a sync tool is remembered for quarantine after
the fresh snapshot of a repair: by then the snapshot holds its readable part.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from marimo_store import _fs
from marimo_store._conflicts import sync_copy_of
from marimo_store._format.framing import FRAME, unpack
from marimo_store._format.layout import SNAPSHOT_SUFFIX
from marimo_store._format.names import SEGMENT_NAME, SNAPSHOT_NAME
from marimo_store._format.records import LOG_RECORD_TYPES, decode_log_record
from marimo_store._format.segments import (
    CLOSE_TYPE,
    MAX_HEADER_BYTES,
    SEGMENT_SUFFIX,
    read_header,
    writer_of,
    writer_of_file,
)
from marimo_store._log import (
    FrameStream,
    is_sealed,
    newest_segments,
    read_at,
    writer_is_gone,
    writer_is_local,
)
from marimo_store._retired import MAX_MARKER_BYTES, is_marker
from marimo_store._snapshot import SnapshotFile
from marimo_store._verify_files import Kind, Problem, SegmentFile, stays_the_same

TYPE_CHECKING = False
if TYPE_CHECKING:
    from io import FileIO

    from marimo_store._findings import VerifyReport
    from marimo_store._format.layout import Layout


class LogPass:
    """The snapshot and segment pass of one verify: it counts into `report`,
    files findings with `find`, and hands what must go to quarantine once
    the fresh snapshot holds its records to `remember`."""

    def __init__(
        self,
        layout: Layout,
        report: VerifyReport,
        find: Callable[[Kind, str, str], Problem],
        remember: Callable[[str, Problem], None],
        grace_seconds: float,
    ) -> None:
        self.layout, self.report, self.grace_seconds = layout, report, grace_seconds
        self.find, self.remember = find, remember
        self.copied_segments: list[tuple[str, str, int, Problem]] = []
        """Segments under another name: `(path, segment id, end of good records, finding)`."""

    def scan_snapshots(self) -> None:
        try:
            entries = list(os.scandir(self.layout.snapshots))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            if not entry.name.endswith(SNAPSHOT_SUFFIX):
                copy = sync_copy_of(entry.name, SNAPSHOT_NAME)
                if copy is not None:
                    self._unread_copy(entry.path, copy, "snapshot")
                continue
            self.report.snapshots_checked += 1
            snapshot, problem = SnapshotFile.inspect(entry.path)
            if snapshot is not None:
                problem = snapshot.deep_damage()
                if problem is None and entry.name != snapshot.id + SNAPSHOT_SUFFIX:
                    copy = sync_copy_of(entry.name, SNAPSHOT_NAME)
                    tool = f"{copy[0]} conflicted copy" if copy else "renamed copy"
                    self.find(Kind.CONFLICTED_COPY, entry.path, f"{tool} of snapshot {snapshot.id}")
                snapshot.close()
            if problem is not None:
                finding = self.find(Kind.DAMAGED_SNAPSHOT, entry.path, problem)
                self.remember(entry.path, finding)

    def scan_segments(self) -> None:
        try:
            entries = list(os.scandir(self.layout.log))
        except (FileNotFoundError, NotADirectoryError):
            return
        segments: list[SegmentFile] = []
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            if entry.name.endswith(SEGMENT_SUFFIX):
                segment = self._scan_segment(entry.path, entry.name)
                if segment is not None:
                    segments.append(segment)
                continue
            copy = sync_copy_of(entry.name, SEGMENT_NAME)
            if copy is not None:
                self._unread_copy(entry.path, copy, "segment")
        newest = newest_segments(segment.segment_id for segment in segments)
        for segment in segments:
            path, end = segment.path, segment.end
            if segment.damaged:
                detail = f"a record fails its checksum at byte {end}"
                self.remember(path, self.find(Kind.DAMAGED_SEGMENT, path, detail))
            elif segment.torn and writer_is_local(writer_of(segment.segment_id)[0]):
                # A write cut short (a crash, a full disk, a truncation) never
                # completes: its writer starts a new segment instead. Only an
                # append under way right now looks the same, for microseconds.
                sealed = is_sealed(segment.segment_id, segment.closed, newest)
                if sealed or stays_the_same(path, segment.size):
                    detail = f"its last {segment.size - end} bytes are a torn record"
                    self.remember(path, self.find(Kind.TORN_SEGMENT, path, detail))
            name = os.path.basename(path)
            if name != segment.segment_id + SEGMENT_SUFFIX:
                copy = sync_copy_of(name, SEGMENT_NAME)
                tool = f"{copy[0]} conflicted copy" if copy else "renamed copy"
                detail = f"{tool} of segment {segment.segment_id}"
                finding = self.find(Kind.CONFLICTED_COPY, path, detail)
                self.copied_segments.append((path, segment.segment_id, end, finding))

    def _scan_segment(self, path: str, name: str) -> SegmentFile | None:
        try:
            with _fs.open_read(path) as file:
                return self._scan_open_segment(path, name, file)
        except OSError:
            return None

    def _scan_open_segment(self, path: str, name: str, file: FileIO) -> SegmentFile | None:
        """Read a segment a window at a time (`FrameStream`), checking every
        record against the format: a malformed one is a finding, and the
        segment goes to quarantine once the fresh snapshot holds the rest.
        A retired segment (a marker left by a cleanup in git) is absent."""
        stat = _fs.fstat(file)
        if is_marker(read_at(file, 0, MAX_MARKER_BYTES + 1)):
            return None
        self.report.segments_checked += 1
        opening = read_header(memoryview(read_at(file, 0, FRAME.size + MAX_HEADER_BYTES)))
        if opening.header is None:
            self._headerless(path, name, stat, opening.problem)
            return None
        frames = FrameStream(file, opening.end, stat.st_size)
        malformed, closed = 0, False
        for payload in frames:
            record = unpack(payload)
            closed = record is not None and record.get("t") == CLOSE_TYPE
            if record is None or (
                record.get("t") in LOG_RECORD_TYPES
                and decode_log_record(opening.header, record) is None
            ):
                malformed += 1
        if malformed:
            detail = f"{malformed} record(s) are malformed (not what docs/format.md allows)"
            self.remember(path, self.find(Kind.MALFORMED_RECORDS, path, detail))
        return SegmentFile(
            path,
            opening.segment_id,
            frames.end,
            stat.st_size,
            damaged=frames.damaged,
            closed=closed,
        )

    def _headerless(self, path: str, name: str, stat: os.stat_result, problem: str) -> None:
        writer = writer_of_file(name)
        if writer is not None and writer_is_gone(writer):
            detail = "its writer died before writing its header"
            self.remember(path, self.find(Kind.TORN_SEGMENT, path, detail))
            return
        young = time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) < (
            self.grace_seconds * 1e9
        )
        if not problem and young:
            return  # perhaps being created or synced right now
        finding = self.find(Kind.DAMAGED_SEGMENT, path, problem or "it never got a header")
        self.remember(path, finding)

    def _unread_copy(self, path: str, copy: tuple[str, str], what: str) -> None:
        finding = self.find(
            Kind.CONFLICTED_COPY,
            path,
            f"{copy[0]} conflicted copy of {what} {copy[1]} (not read under this name)",
        )
        self.remember(path, finding)
