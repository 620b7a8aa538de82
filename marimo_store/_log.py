"""Append-only log segments: framed records, one writer per file.

Each store instance writes its own segments (`log/<writer>.<n>.log`), so no
two processes or machines ever append to the same file: there is nothing to
lock on the put path, and a sync tool never sees two versions of one file.
Readers merge all segments.

The framing of records is `_format/framing.py`; the names, header and close
record of a segment are `_format/segments.py`. A writer creates and extends
its segments through the storage seam (`LocalMedium.appender`, rooted at
`log/`); the checks that the file is still its own use the local file's
identity, which only a local medium has. A writer seals its segment every
`SEGMENT_RECORDS` records with a key index (`_format/keyindex.py`), which a
live index's reader (`_indexed_segments.py`) looks up instead of decoding
the segment.

Implements W4, W5, R1, R2, R3, R7 (docs/format.md §14).
Implements K1, K2, K3 (docs/format.md §16).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence

from marimo_store import _fs
from marimo_store._errors import StoreWarning, UnreadableFiles
from marimo_store._format import keyindex
from marimo_store._format.framing import FRAME, frame, parse_frames, unpack
from marimo_store._format.layout import scan_real_directory
from marimo_store._format.records import (
    LOG_RECORD_TYPES,
    KeyRecord,
    StoredEntry,
    decode_log_record,
)
from marimo_store._format.segments import (
    CLOSE_FRAME,
    CLOSE_TYPE,
    MAX_HEADER_BYTES,
    SEGMENT_SUFFIX,
    header_frame,
    read_header,
    segment_file_name,
    writer_of,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from io import FileIO
    from typing import Any

    from marimo_store._media.local import LocalAppender, LocalMedium

_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


@functools.cache
def host_name() -> str:
    """This machine's name as it appears in writer ids: `[a-z0-9-]`, at most 32.

    From `os.uname()` where it exists: `socket` (what `gethostname` needs)
    costs milliseconds to import, and a first hit should not pay for it.
    """
    try:
        raw = os.uname().nodename
    except AttributeError:  # pragma: no cover - Windows
        import socket  # noqa: PLC0415

        raw = socket.gethostname()
    words = "".join(c if c in _NAME_CHARACTERS else " " for c in raw.lower()).split()
    return "-".join(words)[:32].strip("-") or "host"


def new_writer_id() -> str:
    """`<host>-<pid>-<random>`: unique per store instance, safe as a file name.

    Lowercase alphanumerics and dashes only (sync clients skip names with
    `~` or `.tmp`); 12 random hex digits, never 8 (a pattern some sync
    clients treat as an Office temp file).
    """
    return f"{host_name()}-{os.getpid()}-{os.urandom(6).hex()}"


_WINDOW_BYTES = 4 * 1024 * 1024
"""How much of a file a `FrameStream` reads at once (more only for a larger record)."""


def read_at(file: FileIO, offset: int, count: int) -> bytes:
    """Up to `count` bytes of `file` from `offset` (fewer at its end)."""
    file.seek(offset)
    return _fs.read(file, count)


def cut_short(path: str, identity: tuple[int, int], length: int) -> bool:
    """Whether the file mapped with `length` bytes from `identity` was cut
    shorter in place.

    Snapshots and sealed segments are never changed in place, but another
    program may do it (`rsync --inplace`, a sync tool or a person truncating
    the file). Touching a mapped page past the new end would kill the
    process with SIGBUS, so every read of a map first checks the size (a
    `stat`, about a microsecond); a truncation in the microseconds between
    that check and the read cannot be caught.
    """
    try:
        stat = _fs.stat(path)
    except OSError:
        return False  # deleted or renamed: the mapped inode stays whole
    return (stat.st_dev, stat.st_ino) == identity and stat.st_size < length


class FrameStream:
    """The verified record payloads of `file` from `start` to `size`, read a
    window at a time.

    Memory stays bounded by the larger of the window and one record
    (`MAX_RECORD_BYTES`) whatever the file's size: a file is never read
    whole because it is large (a sparse 3 GiB segment costs a few MiB).
    After iterating, `end` is where the good records end and `damaged`
    says whether a complete record failed its checks (as `parse_frames`).
    """

    __slots__ = ("_file", "_size", "damaged", "end")

    def __init__(self, file: FileIO, start: int, size: int) -> None:
        self._file, self._size = file, size
        self.end = start
        self.damaged = False

    def __iter__(self) -> Iterator[memoryview]:
        want = _WINDOW_BYTES
        while self.end + FRAME.size <= self._size:
            count = min(want, self._size - self.end)
            window = memoryview(read_at(self._file, self.end, count))
            parsed = parse_frames(window)
            yield from parsed.payloads
            self.end += parsed.end
            if parsed.damaged:
                self.damaged = True
                return
            if len(window) < count:
                return  # the file shrank while we read it: a torn tail for now
            if parsed.end:
                want = _WINDOW_BYTES
                continue
            length = FRAME.unpack_from(window)[0]  # the first record is larger than `want`
            if self.end + FRAME.size + length > self._size:
                return  # torn or still being written
            want = FRAME.size + length


class SegmentWriter:
    """Appends records to this store instance's own segment.

    Before each append it checks that the file on disk is still exactly what
    it wrote (same inode, same size, and the mtime and ctime its own last
    write left): if a sync tool replaced it, someone truncated it or changed
    a byte of it in place, or an earlier write failed half-way, it seals
    nothing and simply starts the next segment, so it never appends after
    garbage (records after damage are invisible to every reader). A change
    within the file system's timestamp granularity of our own write (a
    clock tick on kernels without fine-grained timestamps) goes unnoticed.
    """

    def __init__(
        self, log_dir: str, writer_id: str, header: dict[str, Any], *, durable: bool
    ) -> None:
        self.log_dir = log_dir
        self.writer_id = writer_id
        self._header = header
        self._durable = durable
        self._medium: LocalMedium | None = None  # made by the first write
        self._number = -1
        self._appender: LocalAppender | None = None
        self._path = ""
        self._identity: tuple[int, int] = (0, 0)
        self._stamp: tuple[int, int] = (0, 0)  # (mtime, ctime) after our last write
        self._offset = 0
        self._records = 0
        self._index = keyindex.KeyIndexBuilder()
        self._lock = threading.Lock()

    @property
    def segment_id(self) -> str:
        """`<writer>.<n>` of the segment currently written to."""
        return f"{self.writer_id}.{self._number}"

    @property
    def identity(self) -> tuple[int, int]:
        """`(device, inode)` of the segment currently written to."""
        return self._identity

    def append(
        self, *payloads: bytes, keys: Sequence[tuple[int, int | None] | None] = ()
    ) -> tuple[str, int]:
        """Append records in one write; return the segment's name and the offset after them.

        `keys`: the `index_key` of each record (none: not indexed). After
        `SEGMENT_RECORDS` records the segment is sealed with its key index
        (the next append starts a new one)."""
        frames = list(map(frame, payloads))
        with self._lock:
            if not self._still_ours():
                self._rotate()
            self._write(b"".join(frames))
            name, end = os.path.basename(self._path), self._offset
            offset = end - sum(map(len, frames))
            for record_frame, key in zip(frames, keys or [None] * len(frames), strict=True):
                if key is not None:
                    self._index.add(key, offset)
                offset += len(record_frame)
            self._records += len(frames)
            if self._records >= keyindex.SEGMENT_RECORDS:
                with contextlib.suppress(OSError):  # the records are written: readers decode it
                    self._seal()
            return name, end

    def _write(self, data: bytes) -> None:
        appender = self._appender
        assert appender is not None
        try:
            appender.append(data)
            appender.sync()
        except BaseException:
            self._abandon()  # the file may now end in a partial record
            raise
        self._offset += len(data)
        self._stamp = _times(os.fstat(appender.file.fileno()))

    def close(self) -> None:
        """Seal the segment; later readers know it is final."""
        with self._lock:
            if self._appender is None:
                return
            try:
                if self._still_ours():
                    self._seal(indexed=self._records >= keyindex.CLOSE_INDEX_RECORDS)
            finally:
                self._abandon()

    def _seal(self, *, indexed: bool = True) -> None:
        """Append the key index (if `indexed`) and the close record; the
        next append rotates."""
        try:
            self._write(self._index.frames(self._offset) if indexed else CLOSE_FRAME)
        finally:
            self._abandon()

    def _still_ours(self) -> bool:
        if self._appender is None:
            return False
        try:
            stat = os.stat(self._path)
        except OSError:
            return False
        return (
            (stat.st_dev, stat.st_ino) == self._identity
            and stat.st_size == self._offset
            and _times(stat) == self._stamp
        )

    def _abandon(self) -> None:
        if self._appender is not None:
            # The data is already as good as it will get; the next append rotates.
            self._appender.close()
            self._appender = None

    def _rotate(self) -> None:
        from marimo_store._media import MediumExists  # noqa: PLC0415 - writers only
        from marimo_store._media.local import LocalMedium  # noqa: PLC0415

        self._abandon()
        if self._medium is None:
            self._medium = LocalMedium(self.log_dir, durable=self._durable)
        while True:
            self._number += 1
            try:
                appender = self._medium.appender(segment_file_name(self.writer_id, self._number))
            except MediumExists:
                continue  # a leftover of ours (or a synced copy): never append to it
            break
        header = header_frame(self._header, self._number)
        try:
            appender.append(header)
            appender.sync()  # the header, then (first sync) the file's name in log/ (W4)
        except BaseException:
            appender.close()
            raise
        stat = os.fstat(appender.file.fileno())
        self._appender = appender
        self._path = appender.path
        self._identity = (stat.st_dev, stat.st_ino)
        self._stamp = _times(stat)
        self._offset = len(header)
        self._records = 0
        self._index = keyindex.KeyIndexBuilder()


def _times(stat: os.stat_result) -> tuple[int, int]:
    """What any write to a file changes: its mtime and ctime (ns)."""
    return stat.st_mtime_ns, stat.st_ctime_ns


def _closed_before(file: FileIO, header_end: int, start: int, size: int) -> bool:
    """Whether the bytes a snapshot consumed end with the close record.

    Such a record is never read again (reading starts after it), yet it is
    what says the segment is sealed and may be deleted once consumed.
    """
    if not header_end < start <= size:
        return False
    return read_at(file, start - len(CLOSE_FRAME), len(CLOSE_FRAME)) == CLOSE_FRAME


class SegmentState:
    """What a reader knows of one segment file.

    `offset`: bytes read and applied (or skipped as already in a snapshot:
    never less than what a snapshot consumed, even while the file is
    shorter than that);
    `segment_id`: `<writer>.<n>` from the header, the segment's identity
    whatever its file name; `size`: the file size at the last read;
    `damaged_size`: the size when damage was last reported (the file is
    re-read only when it changes); `behind`: the file is shorter than what
    a snapshot already consumed of its segment (an old or half-delivered
    copy: it may still grow).
    """

    __slots__ = (
        "closed",
        "damaged_size",
        "header",
        "identity",
        "offset",
        "segment_id",
        "size",
    )

    def __init__(
        self,
        identity: tuple[int, int],
        offset: int,
        header: dict[str, Any] | None,
        segment_id: str = "",
        size: int = 0,
    ) -> None:
        self.identity = identity
        self.offset = offset
        self.header = header
        self.segment_id = segment_id
        self.size = size
        self.closed = False
        self.damaged_size = -1

    @property
    def behind(self) -> bool:
        """The file is shorter than where reading goes on (what a snapshot
        already consumed of its segment): an old or half-delivered copy."""
        return self.offset > self.size


def writer_is_local(writer_id: str) -> bool:
    """Whether a writer ran on this host: its files reach this directory
    directly, never half-delivered by a sync tool."""
    return _host_and_pid(writer_id)[0] == host_name()


def newest_segments(segment_ids: Iterable[str]) -> dict[str, int]:
    """Each writer's highest segment number among `segment_ids`."""
    newest: dict[str, int] = {}
    for segment_id in segment_ids:
        writer, number = writer_of(segment_id)
        newest[writer] = max(number, newest.get(writer, -1))
    return newest


def is_sealed(segment_id: str, closed: bool, newest: Mapping[str, int]) -> bool:
    """Whether a segment will never grow: closed by its writer, followed by
    a later segment of the same writer (`newest`: `newest_segments` of
    every segment seen), or written by a process of this host that is gone."""
    writer, number = writer_of(segment_id)
    return closed or number < newest[writer] or writer_is_gone(writer)


def writer_is_gone(writer_id: str) -> bool:
    """Whether a writer is known to have ended: it ran on this host and its
    process no longer exists. Unknown (another host) counts as alive."""
    host, pid_text = _host_and_pid(writer_id)
    if host != host_name() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _host_and_pid(writer_id: str) -> tuple[str, str]:
    parts = writer_id.rsplit("-", 2)
    return (parts[0], parts[1]) if len(parts) == 3 else ("", "")


class LogReader:
    """Reads every segment incrementally: only bytes not seen before.

    Any `*.log` file counts as a segment if its first record is a header,
    whatever its name: sync tools rename files (conflicted copies), and the
    identity of a segment is in its header, not its name. Duplicated
    records (a file and its conflicted copy) are harmless because entries
    are idempotent by key. `start_offsets` (segment id -> bytes) skips what a
    snapshot already holds.
    """

    def __init__(self, log_dir: str, start_offsets: Mapping[str, int] | None = None) -> None:
        self.log_dir = log_dir
        self._start_offsets = dict(start_offsets or {})
        self._segments: dict[str, SegmentState] = {}
        self._unreadable = UnreadableFiles()

    def segments(self) -> dict[str, SegmentState]:
        """Every segment file read so far, by file name."""
        return self._segments

    def adopt(
        self,
        name: str,
        segment_id: str,
        identity: tuple[int, int],
        offset: int,
        header: dict[str, Any],
    ) -> None:
        """Treat a segment this process writes as read up to `offset`.

        Its records are already in the index; reading them back would only
        cost time.
        """
        state = self._segments.get(name)
        if state is None or state.identity != identity:
            self._segments[name] = SegmentState(identity, offset, header, segment_id, size=offset)
        else:
            state.offset = state.size = max(state.offset, offset)

    def read_new(self) -> Iterator[StoredEntry | KeyRecord]:
        """Yield every entry, access and tombstone record not yet read,
        decoded and checked (`decode_log_record`); malformed ones are
        skipped with a warning naming the segment.

        Only regular files count: a symlink, FIFO or device named like a
        segment is never opened (a FIFO would block the reader forever). A
        directory or segment that cannot be read right now (EACCES, EIO) is
        a warning, once, and is read again at the next refresh.
        """
        try:
            listing = scan_real_directory(self.log_dir)
        except OSError as error:
            self._unreadable.failed(self.log_dir, error)
            return
        self._unreadable.read(self.log_dir)
        names = [entry.name for entry in listing if entry.is_file(follow_symlinks=False)]
        for name in sorted(names):
            if name.endswith(SEGMENT_SUFFIX):
                yield from self._read_segment(name)

    def _read_segment(self, name: str) -> Iterator[StoredEntry | KeyRecord]:
        path = os.path.join(self.log_dir, name)
        try:
            file = _fs.open_read(path)
        except FileNotFoundError:
            return  # deleted by a cleanup meanwhile
        except OSError as error:
            self._unreadable.failed(path, error)
            return  # unreadable right now; try again at the next refresh
        with file:
            try:
                yield from self._read_open_segment(path, name, file)
            except FileNotFoundError:
                return
            except OSError as error:
                self._unreadable.failed(path, error)
                return  # a read failed: what was applied stands, the rest comes later
        self._unreadable.read(path)

    def _read_open_segment(
        self, path: str, name: str, file: FileIO
    ) -> Iterator[StoredEntry | KeyRecord]:
        stat = _fs.fstat(file)
        identity, size = (stat.st_dev, stat.st_ino), stat.st_size
        state = self._segments.get(name)
        if state is None or state.identity != identity or size < state.offset:
            state = SegmentState(identity, 0, None)  # new, replaced or truncated
            self._segments[name] = state
        if size <= state.offset or size == state.damaged_size:
            return
        state.size = size
        start = state.offset
        header = state.header
        if header is None:
            opening = read_header(memoryview(read_at(file, 0, FRAME.size + MAX_HEADER_BYTES)))
            if opening.header is None:
                if opening.problem:
                    self._report(path, state, size, opening.problem)
                return
            header, segment_id, header_end = opening.header, opening.segment_id, opening.end
            state.header, state.segment_id = header, segment_id
            start = max(header_end, self._start_offsets.get(segment_id, 0))
            if start <= size and self._indexed(path, file, state, start):
                state.offset, state.closed = size, True  # looked up, not read
                return
            state.closed = _closed_before(file, header_end, start, size)
        if start > size:  # the snapshot consumed more than this copy holds
            state.offset = start  # a record boundary: reading goes on there once it grows
            return
        yield from self._decode_from(path, file, state, start)

    def _decode_from(
        self, path: str, file: FileIO, state: SegmentState, start: int
    ) -> Iterator[StoredEntry | KeyRecord]:
        """Decode the records of a segment from `start` to `state.size`."""
        header, size, was_closed = state.header, state.size, state.closed
        assert header is not None
        frames = FrameStream(file, start, size)
        malformed = 0
        for payload in frames:
            record = unpack(payload)
            if record is not None and record.get("t") == CLOSE_TYPE:
                state.closed = True
                continue
            decoded = None if record is None else decode_log_record(header, record)
            if decoded is not None:
                yield decoded
            elif record is None or record.get("t") in LOG_RECORD_TYPES:
                malformed += 1
        state.offset = frames.end
        if frames.damaged:
            self._report(path, state, size, "a record fails its checksum")
        if malformed:
            warnings.warn(
                f"marimo_store: log segment {path} holds {malformed} malformed record(s) "
                "(checksummed, but not what docs/format.md allows); they are skipped",
                StoreWarning,
                stacklevel=4,
            )
        if state.closed and not was_closed:
            self._sealed(path, file, state)

    def _indexed(self, path: str, file: FileIO, state: SegmentState, start: int) -> bool:
        """Whether the segment first seen at `path` (records from `start`) is
        taken whole by its key index (see `IndexingLogReader`), not decoded."""
        return False

    def _sealed(self, path: str, file: FileIO, state: SegmentState) -> None:
        """The segment at `path`, read so far record by record, is now sealed."""

    @staticmethod
    def _report(path: str, state: SegmentState, size: int, reason: str) -> None:
        state.damaged_size = size
        warnings.warn(
            f"marimo_store: log segment {path} is damaged ({reason}); "
            "the records before the damage are used, the rest are ignored",
            StoreWarning,
            stacklevel=5,
        )
