"""Sealed log segments read through their key index: records decoded when hit.

A reader that finds a sealed segment with an index (`_format/keyindex.py`)
maps the file, keeps only the index's small directory in memory and, for a
lookup, verifies the one or two index blocks (once: their columns stay in
memory, at most 16 bytes per record) and decodes the records of the
computation asked for. Iteration (listing) still decodes every record.

The invariant (docs/format.md §16): what a lookup finds here is what
decoding the segment would find, up to damage not yet read. A record that
fails its checks ends the segment there for every later lookup and
iteration (as a reader that decodes it stops at its first bad frame); an
index block that fails its checksum sends this segment back to decoding
(once, kept); a file replaced meanwhile keeps serving the mapped bytes
(the log reader reads whatever took its place), and one cut short in place
yields nothing more.

Implements K3, K4, K5, K6 (docs/format.md §16).
"""

from __future__ import annotations

import functools
import mmap
import os
import warnings
from collections.abc import Iterator

from marimo_store import _fs
from marimo_store._errors import StoreWarning
from marimo_store._format.framing import FRAME, parse_frames, read_frame, unpack
from marimo_store._format.keyindex import (
    block_columns,
    column_offsets,
    computation_hash,
    read_key_index,
)
from marimo_store._format.records import ACCESS_TYPE, KeyRecord, StoredEntry, decode_log_record
from marimo_store._format.segments import MAX_HEADER_BYTES, read_header
from marimo_store._log import LogReader, SegmentState, cut_short, read_at

TYPE_CHECKING = False
if TYPE_CHECKING:
    from array import array
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

    def _indexed(self, path: str, file: FileIO, state: SegmentState, start: int) -> bool:
        index = read_key_index(functools.partial(read_at, file), state.size, start)
        if index is None:
            return False
        self._new.append(IndexedSegment(path, state, _fs.map_read(file, 0), start, index))
        return True

    def _sealed(self, path: str, file: FileIO, state: SegmentState) -> None:
        """A segment decoded so far (another writer's or our own, followed
        while it grew) got its index: its entries need not stay decoded."""
        opening = read_header(memoryview(read_at(file, 0, FRAME.size + MAX_HEADER_BYTES)))
        if opening.header is not None:
            start = max(opening.end, self._start_offsets.get(opening.segment_id, 0))
            if self._indexed(path, file, state, start):
                self._new[-1].followed = True


class IndexedSegment:
    """One sealed segment file with a verified key index, memory-mapped.

    `start`: where its unread records start (after the header, or what a
    snapshot consumed); `end`: where they end (the index's `end`, less once
    damage was read). The map keeps the file's bytes as they were indexed
    even if a sync tool replaces the file (the log reader reads the new one
    as a segment of its own); only a cut in place is checked before each
    read, as for snapshots."""

    __slots__ = (
        "_columns",
        "_cut",
        "_decoded",
        "_header",
        "_identity",
        "_index",
        "_view",
        "end",
        "followed",
        "name",
        "path",
        "start",
    )

    def __init__(
        self, path: str, state: SegmentState, data: mmap.mmap, start: int, index: KeyIndex
    ) -> None:
        assert state.header is not None
        self.path = path
        self.name = os.path.basename(path)
        self._identity = state.identity
        self._view = memoryview(data)
        self._header = state.header
        self.start = start
        self.end = index.end
        self._index = index
        self._cut = False
        self.followed = False
        """Whether its records were read already (a reader followed it while
        it grew): it then replaces the entries kept decoded, and its other
        records (access, tombstone) are already applied."""
        self._decoded: list[Decoded] | None = None
        """Every record, once an index block failed its checksum."""
        self._columns: dict[int, tuple[array[int], array[int]]] = {}
        """The hash and offset columns of each index block read so far, by
        the block's offset: 16 bytes per indexed record at most."""

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

    def lookup(self, block_id: str, module_hash: str) -> list[Decoded]:
        """The entry and tombstone records of one computation."""
        if self._decoded is None:
            found = self._look_up(block_id, module_hash)
            if found is not None:
                return found
            _warn(self.path, "its key index fails its checksum; it is decoded instead")
            self._decoded = list(self.records())
        return [d for d in self._decoded if _is_of(d, block_id, module_hash)]

    def _look_up(self, block_id: str, module_hash: str) -> list[Decoded] | None:
        """`lookup` through the index; None when a block fails its checks.

        A block is verified and read into columns once (`_columns`): every
        later lookup in it is a binary search in memory, with no file
        access, so a store with many sealed segments pays per lookup a few
        microseconds for each, not a block read and checksum."""
        target = computation_hash(block_id, module_hash)
        offsets: list[int] = []
        for block_at in self._index.blocks_for(target):
            columns = self._columns.get(block_at)
            if columns is None:
                if not self._intact():
                    return []
                columns = block_columns(read_frame(self._view, block_at))
                if columns is None:
                    return None
                self._columns[block_at] = columns
            offsets += column_offsets(columns, target)
        if not offsets or not self._intact():
            return []
        found: list[Decoded] = []
        for offset in sorted(offsets):
            if not self.start <= offset < self.end:
                continue
            payload = read_frame(self._view[: self.end], offset)
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
        if not self._intact():
            return
        parsed = parse_frames(self._view[: self.end], self.start)
        for payload in parsed.payloads:
            decoded = self._decode(payload)
            if decoded is not None:
                yield decoded
        if parsed.end < self.end:
            self.end = parsed.end
            _warn(self.path, "a record fails its checksum; later records are ignored")

    def _decode(self, payload: memoryview) -> Decoded | None:
        record = unpack(payload)
        return None if record is None else decode_log_record(self._header, record)

    def _intact(self) -> bool:
        """Whether the mapped file still has all its bytes (see `cut_short`)."""
        if not self._cut and cut_short(self.path, self._identity, len(self._view)):
            self._cut = True
            _warn(self.path, "it was cut short while in use")
        return not self._cut


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
