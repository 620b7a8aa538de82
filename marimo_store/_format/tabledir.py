"""Table directories of snapshots: a lookup verifies only the rows it reads.

A snapshot's key table (docs/format.md §9.5) is one frame with one
checksum: a reader that verifies it when it opens the snapshot hashes and
pages in 16 bytes per entry (16 MB at a million). So a writer also leaves,
between the tombstones frame and the table frame, a table directory
(§9.5.1):

    frame({"t": "tabledir", "rows": rows, "b": bytes})   per block of `rows`
                                                         table rows, "<QQ": its
                                                         first computation hash
                                                         and the xxh3-64 of its
                                                         row bytes

Older readers never look between the two frames (the header's `body` hash
covers the directory, so `verify` still checks every byte), and the table
frame is written as before. A reader that opens a snapshot for lookups
verifies the directory instead of the table (16 bytes per 256 entries),
and each block a lookup reads when it first reads it: a cold lookup costs
two or three 4 KiB blocks, whatever the snapshot holds.

The invariant, as for segment key indexes (§16): a directory can make a
lookup slower, never wrong. A block is used only when its checksum and its
first hash match the directory; the snapshot module decides what a block
that does not match costs.
"""

from __future__ import annotations

import struct

from marimo_store._format.framing import FRAME, frame, pack, read_frame, unpack
from marimo_store._format.keyindex import BLOCK_ROWS, blocks_holding, offsets_of, row_columns
from marimo_store._hashing import record_checksum

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

DIRECTORY_TYPE = "tabledir"
ROW_BYTES = 16
"""A table row, `<QQ`: computation hash, offset of the entry's frame."""

_HASH = struct.Struct("<Q")
_ROW = struct.Struct("<QQ")
_UNCHECKED, _GOOD, _BAD = 0, 1, 2


def directory_frame(table: bytes, rows: int = BLOCK_ROWS) -> bytes:
    """The framed table directory of the table rows `table` (sorted `<QQ` rows)."""
    view = memoryview(table)
    step = rows * ROW_BYTES
    blocks = b"".join(
        _ROW.pack(_HASH.unpack_from(view, start)[0], record_checksum(view[start : start + step]))
        for start in range(0, len(table), step)
    )
    return frame(pack({"t": DIRECTORY_TYPE, "rows": rows, "b": blocks}))


class TableDirectory:
    """The verified directory of one snapshot's key table, and which of its
    blocks verified: one byte per block, plus 16 bytes of directory."""

    __slots__ = ("_firsts", "_state", "_step", "_sums")

    def __init__(self, rows: int, blocks: bytes) -> None:
        self._firsts, self._sums = row_columns(blocks)
        self._step = rows * ROW_BYTES
        self._state = bytearray(len(self._firsts))

    @property
    def blocks(self) -> int:
        """How many blocks the table is cut into."""
        return len(self._firsts)

    def blocks_for(self, target: int) -> range:
        """The blocks that may hold rows of hash `target`."""
        return blocks_holding(self._firsts, target)

    def checked(self, block: int) -> bool:
        """Whether `block` was verified already (whatever the outcome)."""
        return self._state[block] != _UNCHECKED

    def block(self, table: memoryview, block: int) -> memoryview | None:
        """The rows of `block` of `table` (the table frame's payload) when
        they match the directory (verified once), else None."""
        rows = table[block * self._step : (block + 1) * self._step]
        state = self._state[block]
        if state == _UNCHECKED:
            good = (
                len(rows) >= ROW_BYTES
                and _HASH.unpack_from(rows)[0] == self._firsts[block]
                and record_checksum(rows) == self._sums[block]
            )
            self._state[block] = state = _GOOD if good else _BAD
        return rows if state == _GOOD else None


class KeyTable:
    """How a snapshot's key table is trusted, and the lookups that follow:
    whole (verified when opened, or when first walked), or block by block
    through its directory. `damaged(reason)` warns of damage. The table
    itself (the table frame's payload, in the memory map) is passed to each
    call, never kept: closing the map releases it."""

    __slots__ = ("_checksum", "_damaged", "_directory", "_verified")

    def __init__(
        self, checksum: int, directory: TableDirectory | None, damaged: Callable[[str], None]
    ) -> None:
        self._checksum = checksum
        self._directory = directory
        """Set while the table is trusted block by block (not verified whole)."""
        self._verified: bool | None = True if directory is None else None
        self._damaged = damaged

    def offsets_of(self, table: memoryview, target: int) -> list[int]:
        """The entry frame offsets the table lists under hash `target`.

        Besides the blocks that may hold the hash, the block after them is
        checked too: its first hash, once it matches, bounds the run. A
        directory whose first hashes are wrong where no lookup reads a
        block (the rows of a block it claims starts higher) could
        otherwise send a lookup past the rows it wants, unchecked."""
        directory = self._directory
        if directory is not None:
            picked = directory.blocks_for(target)
            found = []
            for block in range(picked.start, min(picked.stop + 1, directory.blocks)):
                rows = self._block(table, directory, block)
                if rows is not None and block < picked.stop:
                    found += offsets_of(rows, target)
            if self._directory is directory:  # still trusted
                return found
        return offsets_of(table, target)

    def verified(self, table: memoryview) -> bool:
        """Whether the whole table verifies (checked once); if it does,
        lookups use it rather than the directory."""
        if self._verified is None:
            self._verified = record_checksum(table) == self._checksum
            if self._verified:
                self._directory = None
        return self._verified

    def walked(self, table: memoryview) -> list[memoryview]:
        """The parts of the table a walk over every entry reads: all of it
        when it verifies, else the blocks that match the directory (those
        lookups use)."""
        directory = self._directory
        if directory is None or self.verified(table):
            return [table]
        parts = (self._block(table, directory, block) for block in range(directory.blocks))
        return [rows for rows in parts if rows is not None]

    def _block(self, table: memoryview, directory: TableDirectory, block: int) -> memoryview | None:
        """The rows of one block when they verify. One that does not: the
        whole table is checked; if it verifies, the directory was wrong and
        is dropped, else the block is damage (a warning, and a miss for its
        rows: never a guess)."""
        fresh = not directory.checked(block)
        rows = directory.block(table, block)
        if rows is None and fresh and not self.verified(table):
            self._damaged("a block of its key table fails its checksum")
        return rows


def read_table_directory(
    region: memoryview, tombstones_at: int, count: int
) -> TableDirectory | str | None:
    """The table directory of a snapshot whose table holds `count` rows, or
    what is wrong with it, or None when there is none (an older writer).

    `region` ends where the table frame starts; the directory is what
    follows the tombstones frame (at `tombstones_at`) up to there.
    """
    if tombstones_at + FRAME.size > len(region):
        return None  # no tombstones frame to end: verify reports it
    at = tombstones_at + FRAME.size + FRAME.unpack_from(region, tombstones_at)[0]
    if at >= len(region):
        return None  # nothing after it (at ==), or it overruns the table (verify reports it)
    payload = read_frame(region, at)
    if payload is None or at + FRAME.size + len(payload) != len(region):
        return "its table directory fails its checksum"
    document = unpack(payload)
    rows = None if document is None else document.get("rows")
    blocks = None if document is None else document.get("b")
    if (
        document is None
        or document.get("t") != DIRECTORY_TYPE
        or type(rows) is not int
        or rows < 1
        or not isinstance(blocks, bytes)
    ):
        return "its table directory is malformed"
    if len(blocks) != -(-count // rows) * ROW_BYTES:
        return "its table directory does not match its key table"
    return TableDirectory(rows, blocks)


def directory_damage(region: memoryview, tombstones_at: int, table: memoryview) -> str | None:
    """What is wrong with a snapshot's table directory (see
    `read_table_directory`), every block of `table` checked, or None."""
    directory = read_table_directory(region, tombstones_at, len(table) // ROW_BYTES)
    if directory is None or isinstance(directory, str):
        return directory
    if any(directory.block(table, block) is None for block in range(directory.blocks)):
        return "its table directory does not match its key table"
    return None
