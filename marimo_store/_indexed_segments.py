"""Sealed log segments read through their key index: records decoded when hit.

A reader that finds a sealed segment with an index (`_format/keyindex.py`)
keeps only the index's small directory in memory and, for a lookup, reads
the one or two index blocks and the records of the computation asked for.
Iteration (listing, cleanup, verify) still decodes every record.

The invariant (docs/format.md §15): what a lookup finds here is what
decoding the segment would find, up to damage not yet read. A record that
fails its checks ends the segment there for every later lookup and
iteration (as a reader that decodes it stops at its first bad frame); an
index block that fails its checksum sends this segment back to decoding
(once, kept), and a file that was replaced or cut short yields nothing
(the log reader reads whatever took its place).

Implements K3, K4, K5, K6 (docs/format.md §15).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterator

from marimo_store import _fs
from marimo_store._errors import StoreWarning, warn_unreadable
from marimo_store._format.framing import FRAME, MAX_RECORD_BYTES, read_frame, unpack
from marimo_store._format.keyindex import block_offsets, computation_hash, read_key_index
from marimo_store._format.records import ACCESS_TYPE, KeyRecord, StoredEntry, decode_log_record
from marimo_store._format.segments import MAX_HEADER_BYTES, read_header
from marimo_store._log import FrameStream, LogReader, SegmentState, read_at

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from io import FileIO

    from marimo_store._format.keyindex import KeyIndex

    Decoded = StoredEntry | KeyRecord


class IndexingLogReader(LogReader):
    """A log reader that leaves sealed, indexed segments undecoded: it hands
    them out (`take_indexed`) to be looked up instead."""

    def __init__(self, log_dir: str, start_offsets: Mapping[str, int] | None = None) -> None:
        super().__init__(log_dir, start_offsets)
        self._new: list[IndexedSegment] = []
        self.reading = ""
        """The file name of the segment whose records `read_new` yields now."""

    def take_indexed(self) -> list[IndexedSegment]:
        """The indexed segments found since the last call."""
        new, self._new = self._new, []
        return new

    def _decode_from(
        self, path: str, file: FileIO, state: SegmentState, start: int
    ) -> Iterator[StoredEntry | KeyRecord]:
        self.reading = os.path.basename(path)
        yield from super()._decode_from(path, file, state, start)

    def _indexed(
        self, path: str, file: FileIO, state: SegmentState, start: int, *, followed: bool = False
    ) -> bool:
        index = read_key_index(functools.partial(read_at, file), state.size, start)
        if index is None:
            return False
        self._new.append(IndexedSegment(path, state, start, index, followed=followed))
        return True

    def _sealed(self, path: str, file: FileIO, state: SegmentState) -> None:
        """A segment decoded so far (another writer's or our own, followed
        while it grew) got its index: its entries need not stay decoded."""
        opening = read_header(memoryview(read_at(file, 0, FRAME.size + MAX_HEADER_BYTES)))
        if opening.header is not None:
            start = max(opening.end, self._start_offsets.get(opening.segment_id, 0))
            self._indexed(path, file, state, start, followed=True)


class IndexedSegment:
    """One sealed segment file with a verified key index.

    `start`: where its unread records start (after the header, or what a
    snapshot consumed); `end`: where they end (the index's `end`, less once
    damage was read)."""

    __slots__ = (
        "_decoded",
        "_header",
        "_identity",
        "_index",
        "_warned",
        "end",
        "followed",
        "name",
        "path",
        "size",
        "start",
    )

    def __init__(
        self, path: str, state: SegmentState, start: int, index: KeyIndex, *, followed: bool
    ) -> None:
        assert state.header is not None
        self.followed = followed
        """Whether its records were read already (a reader followed it while
        it grew): it then replaces the entries kept decoded, and its other
        records (access, tombstone) are already applied."""
        self.path = path
        self.name = os.path.basename(path)
        self._identity: tuple[int, int] | None = state.identity
        self.size = state.size
        self._header = state.header
        self.start = start
        self.end = index.end
        self._index = index
        self._warned = False
        self._decoded: list[Decoded] | None = None
        """Every record, once an index block failed its checksum."""

    @property
    def entries(self) -> int:
        """Entry records it holds (some perhaps before `start`: a cleanup trigger)."""
        return self._index.entries

    @property
    def newest(self) -> int:
        """The largest `created_at` of its entry records."""
        return self._index.newest

    @property
    def oldest(self) -> int | None:
        """The smallest `created_at` of its entry records (None: none)."""
        return self._index.oldest if self._index.entries else None

    def lookup(self, block_id: str, module_hash: str) -> list[Decoded] | None:
        """The entry and tombstone records of one computation; None when the
        file cannot be read right now (a warning, once until it reads again)."""
        if self._decoded is None:
            try:
                found = self._look_up(block_id, module_hash)
            except OSError as error:
                self._failed(error)
                return None
            self._warned = False
            if found is not None:
                return found
        assert self._decoded is not None
        return [d for d in self._decoded if _is_of(d, block_id, module_hash)]

    def _look_up(self, block_id: str, module_hash: str) -> list[Decoded] | None:
        """`lookup` through the index; None when it sent us back to decoding."""
        file = self._open()
        if file is None:
            return []
        found: list[Decoded] = []
        with file:
            target = computation_hash(block_id, module_hash)
            offsets: list[int] = []
            for block_at in self._index.blocks_for(target):
                listed = block_offsets(_frame_at(file, block_at, self.size), target)
                if listed is None:
                    _warn(self.path, "its key index fails its checksum; it is decoded instead")
                    self._decoded = list(self._stream(file))
                    return None
                offsets += listed
            for offset in sorted(offsets):
                if not self.start <= offset < self.end:
                    continue
                payload = _frame_at(file, offset, self.end)
                if payload is None:
                    self.end = offset  # as far as a decoding reader gets
                    _warn(self.path, "a record fails its checksum; later records are ignored")
                    break
                decoded = self._decode(payload)
                if decoded is not None and _is_of(decoded, block_id, module_hash):
                    found.append(decoded)
        return found

    def records(self) -> Iterator[Decoded]:
        """Every record from `start` to `end`, decoded (as a log reader would)."""
        if self._decoded is not None:
            yield from self._decoded
            return
        try:
            file = self._open()
            if file is not None:
                with file:
                    yield from self._stream(file)
        except OSError as error:
            self._failed(error)  # what was yielded stands, as a log reader's

    def _stream(self, file: FileIO) -> Iterator[Decoded]:
        frames = FrameStream(file, self.start, self.end)
        for payload in frames:
            decoded = self._decode(payload)
            if decoded is not None:
                yield decoded
        if frames.damaged or frames.end < self.end:
            self.end = frames.end
            _warn(self.path, "a record fails its checksum; later records are ignored")

    def _decode(self, payload: memoryview) -> Decoded | None:
        record = unpack(payload)
        return None if record is None else decode_log_record(self._header, record)

    def _failed(self, error: OSError) -> None:
        if not self._warned:
            self._warned = True
            warn_unreadable(self.path, error)

    def _open(self) -> FileIO | None:
        """The file, if it is still the one indexed and whole (OSError: it
        cannot be read right now)."""
        if self._identity is None:
            return None
        try:
            file = _fs.open_read(self.path)
        except FileNotFoundError:
            return None  # deleted by a cleanup: its snapshot holds the records
        stat = _fs.fstat(file)
        if (stat.st_dev, stat.st_ino) != self._identity or stat.st_size < self.size:
            file.close()
            self._identity = None  # for good: the log reader reads what took its place
            _warn(self.path, "it was replaced or cut short while in use; it is read again")
            return None
        return file


def _frame_at(file: FileIO, offset: int, limit: int) -> memoryview | None:
    """The verified payload of the record framed at `offset`, ending by `limit`."""
    head = read_at(file, offset, FRAME.size)
    if len(head) < FRAME.size:
        return None
    length = FRAME.unpack_from(head)[0]
    if length > MAX_RECORD_BYTES or offset + FRAME.size + length > limit:
        return None
    return read_frame(memoryview(head + read_at(file, offset + FRAME.size, length)), 0)


def _is_of(decoded: Decoded, block_id: str, module_hash: str) -> bool:
    """Whether a record is an entry or tombstone of this computation."""
    if isinstance(decoded, StoredEntry):
        key = decoded.metadata.key
    elif decoded.kind == ACCESS_TYPE:
        return False
    else:
        key = decoded.key
    return key.block_id == block_id and key.module_hash == module_hash


def _warn(path: str, reason: str) -> None:
    warnings.warn(
        f"marimo_store: log segment {path} is damaged ({reason})", StoreWarning, stacklevel=5
    )
