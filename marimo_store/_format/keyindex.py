"""Key indexes of sealed log segments: find a record without decoding the others.

A writer seals a segment after `SEGMENT_RECORDS` records (or when it
closes one of at least `CLOSE_INDEX_RECORDS`) by appending, after its last
record and before the close record, an index of the entry and tombstone
records it holds (docs/format.md §16.1):

    frame({"t": "keys", "r": rows}) x blocks   rows `<QQ`: computation hash,
                                               offset of the record's frame;
                                               sorted, BLOCK_ROWS per block
    frame({"t": "keydir", ...})                per block its first hash and
                                               offset; where the indexed
                                               records end; counts
    frame({"t": "keyat", "at": <Q>})           where the directory starts
                                               (always LOCATOR_BYTES long)
    close record

Every part is a record of a type older readers ignore, each with its own
checksum, so a reader verifies only the directory and the blocks a lookup
touches: a cold lookup costs a few small reads per segment, whatever the
segment holds. Access records are not indexed: a lookup does not need them.

The invariant: an index can make a lookup slower, never wrong. A reader uses
it only when the segment ends with the close record right after a locator
and directory that verify; a block that fails its checksum sends the reader
back to decoding the segment; every record is verified when it is decoded.

Implements K1, K2 (docs/format.md §16).
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left

from marimo_store._entry import is_timestamp
from marimo_store._format.framing import FRAME, frame, pack, read_frame, unpack
from marimo_store._format.records import ENTRY_TYPE, TOMBSTONE_TYPE
from marimo_store._format.segments import CLOSE_FRAME
from marimo_store._hashing import text_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

SEGMENT_RECORDS = 32_768
"""A writer seals its segment after this many records (and starts the next):
what a reader decodes of a live writer's segment stays bounded."""

CLOSE_INDEX_RECORDS = 64
"""A writer that closes a segment indexes it only from this many records. A
smaller one keeps the layout of earlier versions and is decoded: a cleanup
is due before 64 segments pile up (`_cleanup_trigger.py`), so what a cold reader
decodes of them stays bounded too."""

BLOCK_ROWS = 256
"""Rows per index block: a lookup verifies one or two blocks of 4 KiB."""

KEYS_TYPE = "keys"
DIRECTORY_TYPE = "keydir"
LOCATOR_TYPE = "keyat"

_ROW = struct.Struct("<QQ")
_HASH = struct.Struct("<Q")
LOCATOR_BYTES = len(frame(pack({"t": LOCATOR_TYPE, "at": _HASH.pack(0)})))
TAIL_BYTES = LOCATOR_BYTES + len(CLOSE_FRAME)
"""The fixed-size end of an indexed segment: the locator and the close record."""


def computation_hash(block_id: str, module_hash: str) -> int:
    """The 64-bit key of snapshot tables and segment indexes (collisions are
    checked on decode)."""
    digest: int = _HASH.unpack(text_digest(f"{block_id}\x00{module_hash}"))[0]
    return digest


def index_key(record: Mapping[str, Any]) -> tuple[int, int | None] | None:
    """`(computation hash, created_at)` of an entry record, `(hash, None)` of
    a tombstone, None for what an index leaves out (access records)."""
    kind = record.get("t")
    if kind not in (ENTRY_TYPE, TOMBSTONE_TYPE):
        return None
    block_id, module_hash, created_at = record["k"]
    return computation_hash(block_id, module_hash), created_at if kind == ENTRY_TYPE else None


class KeyIndexBuilder:
    """The rows of the segment a writer is appending to, until it seals it.

    16 bytes per indexed record (two arrays), whatever the records hold."""

    __slots__ = ("_hashes", "_offsets", "entries", "newest", "oldest")

    def __init__(self) -> None:
        self._hashes = array("Q")
        self._offsets = array("Q")
        self.entries = 0
        self.newest = 0
        self.oldest = 0

    def add(self, key: tuple[int, int | None], offset: int) -> None:
        """The record framed at `offset` has index key `key` (`index_key`)."""
        hash_, created_at = key
        self._hashes.append(hash_)
        self._offsets.append(offset)
        if created_at is not None:
            self.entries += 1
            self.newest = max(self.newest, created_at)
            self.oldest = created_at if self.entries == 1 else min(self.oldest, created_at)

    def frames(self, at: int) -> bytes:
        """The index frames and the close record, to append at offset `at`
        (where the indexed records end)."""
        order = sorted(range(len(self._hashes)), key=lambda i: (self._hashes[i], self._offsets[i]))
        parts: list[bytes] = []
        directory = bytearray()
        position = at
        for start in range(0, len(order), BLOCK_ROWS):
            rows = b"".join(
                _ROW.pack(self._hashes[i], self._offsets[i])
                for i in order[start : start + BLOCK_ROWS]
            )
            block = frame(pack({"t": KEYS_TYPE, "r": rows}))
            directory += _ROW.pack(self._hashes[order[start]], position)
            parts.append(block)
            position += len(block)
        counts = {"n": self.entries, "new": self.newest, "old": self.oldest}
        parts.append(frame(pack({"t": DIRECTORY_TYPE, "end": at, "b": bytes(directory), **counts})))
        parts.append(frame(pack({"t": LOCATOR_TYPE, "at": _HASH.pack(position)})))
        parts.append(CLOSE_FRAME)
        return b"".join(parts)


class KeyIndex:
    """The verified directory of a sealed segment's index.

    `end`: where the indexed records end (the first index frame); `entries`,
    `newest`, `oldest`: the count and the largest and smallest `created_at`
    of its entry records."""

    __slots__ = ("_blocks", "_firsts", "end", "entries", "newest", "oldest")

    def __init__(self, directory: bytes, end: int, counts: tuple[int, int, int]) -> None:
        self._firsts, self._blocks = row_columns(directory)
        self.end = end
        self.entries, self.newest, self.oldest = counts

    def blocks_for(self, target: int) -> list[int]:
        """Offsets of the blocks that may hold rows of hash `target`."""
        return [self._blocks[block] for block in blocks_holding(self._firsts, target)]


def row_columns(rows: bytes) -> tuple[array[int], array[int]]:
    """The two columns of `<QQ` rows (`len(rows)` a multiple of 16), read
    in C rather than row by row: a cold lookup reads one directory per
    sealed segment."""
    pairs = array("Q")
    pairs.frombytes(rows)
    if sys.byteorder == "big":
        pairs.byteswap()
    return pairs[0::2], pairs[1::2]


def blocks_holding(firsts: Sequence[int], target: int) -> range:
    """The blocks, of a sorted table cut into blocks whose first hashes are
    `firsts`, that may hold rows of hash `target`: equal hashes may span
    blocks, so the run can start in the block before the first one that
    starts with `target`."""
    first = max(bisect_left(firsts, target) - 1, 0)
    end = first
    while end < len(firsts) and firsts[end] <= target:
        end += 1
    return range(first, end)


def read_key_index(read: Callable[[int, int], bytes], size: int, start: int) -> KeyIndex | None:
    """The index at the end of a segment of `size` bytes whose records start
    at `start`, or None when it has none that verifies (`read(offset,
    count)` reads the file)."""
    if size < start + TAIL_BYTES:
        return None
    tail = read(size - TAIL_BYTES, TAIL_BYTES)
    if tail[LOCATOR_BYTES:] != CLOSE_FRAME:
        return None
    locator_payload = read_frame(memoryview(tail), 0)
    locator = None if locator_payload is None else unpack(locator_payload)
    at = None if locator is None else locator.get("at")
    if locator is None or locator.get("t") != LOCATOR_TYPE or not isinstance(at, bytes):
        return None
    (directory_at,) = _HASH.unpack(at) if len(at) == _HASH.size else (size,)
    length = size - TAIL_BYTES - directory_at
    if directory_at < start or length < FRAME.size:
        return None
    payload = read_frame(memoryview(read(directory_at, length)), 0)
    document = None if payload is None or len(payload) + FRAME.size != length else unpack(payload)
    if document is None or document.get("t") != DIRECTORY_TYPE:
        return None
    directory, end = document.get("b"), document.get("end")
    counts = (document.get("n"), document.get("new"), document.get("old"))
    if not isinstance(directory, bytes) or len(directory) % _ROW.size:
        return None
    if not is_timestamp(end) or not start <= end <= directory_at:
        return None
    if not all(is_timestamp(count) for count in counts):
        return None
    return KeyIndex(directory, end, counts)  # type: ignore[arg-type]


def block_columns(payload: memoryview | None) -> tuple[array[int], array[int]] | None:
    """The hash and offset columns of a verified block payload (its rows,
    sorted by hash), or None when the block is not one. Copied out of the
    map: a reader keeps the columns of the blocks it read, and searches
    them again without touching the file (see `column_offsets`)."""
    document = None if payload is None else unpack(payload)
    rows = None if document is None else document.get("r")
    if document is None or document.get("t") != KEYS_TYPE or not isinstance(rows, bytes):
        return None
    return row_columns(rows) if len(rows) % _ROW.size == 0 else None


def column_offsets(columns: tuple[array[int], array[int]], target: int) -> list[int]:
    """The offsets listed under hash `target` in a block's columns (a binary
    search in C, then the run of equal hashes)."""
    hashes, offsets = columns
    row = bisect_left(hashes, target)
    found = []
    while row < len(hashes) and hashes[row] == target:
        found.append(offsets[row])
        row += 1
    return found


def offsets_of(table: bytes | memoryview, target: int) -> list[int]:
    """The offsets in a sorted table of `<QQ` rows (hash, offset) whose hash
    is `target`: a binary search, then the run of equal hashes."""
    count = len(table) // _ROW.size
    low, high = 0, count
    while low < high:  # leftmost row whose hash is >= target
        middle = (low + high) // 2
        if _ROW.unpack_from(table, middle * _ROW.size)[0] < target:
            low = middle + 1
        else:
            high = middle
    found = []
    for row in range(low, count):
        hash_, offset = _ROW.unpack_from(table, row * _ROW.size)
        if hash_ != target:
            break
        found.append(offset)
    return found
