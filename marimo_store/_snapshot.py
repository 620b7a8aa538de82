"""Snapshots: immutable files holding the merged state, and the merge itself.

A snapshot is laid out so that opening a store costs microseconds whatever
its size: the reader memory-maps the file, checks a small header and the
directory of a fixed-width table of computation hashes, and decodes only
the entries a lookup asks for (a binary search in the directory, then in
the two or three blocks of the table it names, each verified when first
read). Merging, cleanup and verify check the whole table and read
everything.

    frame(header)              msgpack map (identity, parents, consumed log)
    frame(entry) x count       entry records, ordered by (computation hash, created_at)
    frame(tombstones)          msgpack list of [block_id, module_hash, created_at, deleted_at]
    frame(table directory)     per 256 table rows: first hash, xxh3-64 (_format/tabledir.py)
    frame(table)               count rows of <QQ: computation hash, offset of the entry's frame
    footer                     <QQ8s: tombstones frame offset, table frame offset, magic

Every frame carries its own checksum (see _format/framing.py), so a damaged entry is
dropped alone. Snapshots of older writers have no table directory: their
table is verified whole when they are opened, as it always was. The
snapshot's identity is the xxh3-128 of its header
payload, which includes the hash of everything after it: sync tools rename
files, so the name is only a convenience.

Implements M2, M4, R1, R4 (docs/format.md §14).
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import warnings
from collections.abc import Iterator
from functools import partial

import msgpack

from marimo_store import _fs
from marimo_store._entry import ExecutionKey, is_timestamp
from marimo_store._errors import StoreWarning, warn_unreadable
from marimo_store._format.framing import (
    FRAME,
    MAX_RECORD_BYTES,
    frame,
    pack,
    read_frame,
    unpack,
    unpack_any,
)
from marimo_store._format.keyindex import computation_hash
from marimo_store._format.layout import SNAPSHOT_SUFFIX, scan_real_directory
from marimo_store._format.records import (
    StoredEntry,
    decode_entry,
    encode_entry,
    key_from_fields,
    winner,
)
from marimo_store._format.tabledir import (
    KeyTable,
    TableDirectory,
    directory_damage,
    directory_frame,
    read_table_directory,
)
from marimo_store._hashing import content_digest, content_hasher
from marimo_store._log import cut_short, read_at
from marimo_store._retired import MAX_MARKER_BYTES, is_marker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SNAPSHOT_TYPE = "snapshot"
SNAPSHOT_VERSION = 1
_FOOTER = struct.Struct("<QQ8s")
_MAGIC = b"msnap01\n"
_ROW = struct.Struct("<QQ")


class StoreState:
    """A fully merged state: what cleanup works on and snapshots hold.

    `consumed`: segment id -> (bytes consumed, when a cleanup last saw the
    segment); `ancestors`: ids of every snapshot this state descends from ->
    their created_at; `dropped`: entries this merge saw and a tombstone
    removed, with the tombstone's time (object GC knows their objects were
    referenced and no longer are).
    """

    __slots__ = (
        "ancestors",
        "consumed",
        "dropped",
        "entries",
        "frames",
        "heads",
        "hits",
        "last_access",
        "tombstones",
    )

    def __init__(self, heads: list[str] | None = None) -> None:
        self.entries: dict[ExecutionKey, StoredEntry] = {}
        self.dropped: dict[ExecutionKey, StoredEntry] = {}
        self.frames: dict[ExecutionKey, KeptFrame] = {}
        self.tombstones: dict[ExecutionKey, int] = {}
        self.last_access: dict[ExecutionKey, int] = {}
        self.hits: dict[ExecutionKey, int] = {}
        self.consumed: dict[str, tuple[int, int]] = {}
        self.heads: list[str] = heads or []
        self.ancestors: dict[str, int] = {}

    def add_entry(self, stored: StoredEntry, kept: KeptFrame | None = None) -> None:
        key = stored.metadata.key
        if key in self.tombstones:
            self.dropped.setdefault(key, stored)
            return
        present = self.entries.get(key)
        chosen = stored if present is None else winner(present, stored)
        self.entries[key] = chosen
        if kept is not None and chosen is stored:
            self.frames[key] = kept

    def add_tombstone(self, key: ExecutionKey, deleted_at: int) -> None:
        self.tombstones[key] = max(deleted_at, self.tombstones.get(key, 0))
        self.frames.pop(key, None)
        stored = self.entries.pop(key, None)
        if stored is not None:
            self.dropped[key] = stored

    def add_access(self, key: ExecutionKey, accessed_at: int, hits: int = 0) -> None:
        if accessed_at > self.last_access.get(key, 0):
            self.last_access[key] = accessed_at
        if hits:
            self.hits[key] = self.hits.get(key, 0) + hits

    def add_counted_hits(self, key: ExecutionKey, hits: int) -> None:
        """A head's count: heads may share history, so the largest one counts."""
        if hits > self.hits.get(key, 0):
            self.hits[key] = hits

    def live(self) -> list[StoredEntry]:
        """Live entries with their last access filled in."""
        found = []
        for key, stored in self.entries.items():
            accessed = self.last_access.get(key, stored.metadata.last_access)
            hits = self.hits.get(key, stored.metadata.hits)
            if accessed == stored.metadata.last_access and hits == stored.metadata.hits:
                found.append(stored)
            else:
                metadata = stored.metadata.replace(last_access=accessed, hits=hits)
                found.append(StoredEntry(metadata, stored.inline))
        return found


class KeptFrame:
    """An entry's record as a snapshot holds it: `frame` (framing included)
    and `row_hash` (its key table hash) are written again verbatim while
    the merged state still holds `stored` itself, unchanged (the same
    object: no newer duplicate won, no access or hit count changed it)."""

    __slots__ = ("frame", "row_hash", "stored")

    def __init__(self, stored: StoredEntry, row_hash: int, frame: bytes) -> None:
        self.stored = stored
        self.row_hash = row_hash
        self.frame = frame


def _key_fields(key: ExecutionKey) -> list[Any]:
    return [key.block_id, key.module_hash, key.created_at]


class SnapshotFile:
    """A verified, memory-mapped snapshot; entries are decoded on demand.

    Opened for lookups (`lazy`), a snapshot with a table directory has its
    key table verified block by block as lookups read it; a walk over every
    entry verifies the whole table first."""

    def __init__(
        self,
        path: str,
        data: mmap.mmap,
        header: dict[str, Any],
        layout: tuple[int, int],
        identity: tuple[int, int] = (0, 0),
        *,
        directory: TableDirectory | None = None,
    ) -> None:
        self.path = path
        self._identity = identity
        self.truncated = False
        """Set when the file was cut short in place while mapped: never read it again."""
        self._data = data
        self._view = memoryview(data)
        self.header = header
        self._tombstones_at, self._table_at = layout
        length = FRAME.unpack_from(self._view, self._table_at)[0]
        table_start = self._table_at + FRAME.size
        self._table = self._view[table_start : table_start + length]
        self.count = len(self._table) // _ROW.size
        checksum = FRAME.unpack_from(self._view, self._table_at)[1]
        self._keys = KeyTable(checksum, directory, partial(_damaged, path))
        self.id: str = header["id"]
        self.parents: list[str] = header["parents"]
        self.ancestors: dict[str, int] = header["ancestors"]
        self.consumed: dict[str, tuple[int, int]] = {
            name: (offset, seen) for name, (offset, seen) in header["consumed"].items()
        }
        self.created_at: int = header["created_at"]
        newest = header.get("newest")
        self.newest: int | None = newest if type(newest) is int else None
        """The largest `created_at` of its entries (None: written without it)."""
        self._decoded: dict[tuple[str, str], list[StoredEntry]] = {}

    @classmethod
    def inspect(cls, path: str, *, lazy: bool = False) -> tuple[SnapshotFile | None, str | None]:
        """The snapshot at `path`, or what is wrong with it; `(None, None)` if
        it vanished (a concurrent cleanup) or cannot be read right now.

        `lazy` (lookups): when the snapshot has a table directory that
        verifies, check it rather than the whole key table."""
        size = 0
        try:
            with _fs.open_read(path) as file:
                stat = _fs.fstat(file)
                size = stat.st_size
                if size <= MAX_MARKER_BYTES and is_marker(_fs.read(file)):
                    return None, None  # retired by a cleanup (a store in git): absent
                if size < _FOOTER.size + FRAME.size:
                    return None, "too short"
                # The footer is checked before mapping: a 3 GiB file of zeros costs 24 bytes.
                footer = _footer_problem(read_at(file, size - _FOOTER.size, _FOOTER.size), size)
                if footer is not None:
                    return None, footer
                data = _fs.map_read(file, 0)
        except (FileNotFoundError, ValueError):
            return None, None
        except OSError as error:
            if error.errno == errno.ENOMEM:  # larger than the address space left to us
                return None, f"it is too large to map ({size} bytes)"
            warn_unreadable(path, error)
            return None, None
        problem = _check(memoryview(data), size, lazy=lazy)
        if isinstance(problem, str):
            data.close()
            return None, problem
        header, layout, directory = problem
        identity = (stat.st_dev, stat.st_ino)
        return cls(path, data, header, layout, identity, directory=directory), None

    def _intact(self) -> bool:
        """Whether the mapped file still has all its bytes (see `cut_short`)."""
        if self.truncated:
            return False
        if cut_short(self.path, self._identity, len(self._data)):
            self.truncated = True
            _damaged(self.path, "it was cut short while in use")
            return False
        return True

    def deep_damage(self) -> str | None:
        """What is wrong with any byte of the file, or None.

        Opening checks only the header, key table (or its directory) and
        footer (that is what keeps it fast); this also checks every entry
        record, the tombstones, the table directory and the header's hash
        of everything between header and table.
        """
        if not self._intact():
            return "it was cut short"
        if not self._keys.verified(self._table):
            return "its key table fails its checksum"
        damaged = sum(
            self._entry_at(_ROW.unpack_from(self._table, row * _ROW.size)[1]) is None
            for row in range(self.count)
        )
        if damaged:
            return f"{damaged} entry record(s) fail their checksum"
        if read_frame(self._view[: self._table_at], self._tombstones_at) is None:
            return "its tombstone record fails its checksum"
        header_end = FRAME.size + FRAME.unpack_from(self._view, 0)[0]
        body = self._view[header_end : self._table_at]
        if content_digest(body).hex() != self.header.get("body"):
            return "its body does not match the hash in its header"
        if self.header.get("count") != self.count:
            return "its entry count does not match its key table"
        return directory_damage(self._view[: self._table_at], self._tombstones_at, self._table)

    def lookup(self, block_id: str, module_hash: str) -> list[StoredEntry]:
        """Every run of one computation held by this snapshot."""
        wanted = (block_id, module_hash)
        cached = self._decoded.get(wanted)
        if cached is not None:
            return cached
        if not self._intact():
            return []
        found: list[StoredEntry] = []
        for offset in self._keys.offsets_of(self._table, computation_hash(block_id, module_hash)):
            stored = self._entry_at(offset)
            if stored is None:  # perhaps the run asked for: a miss, never a guess
                _damaged(self.path, "an entry record fails its checksum")
                continue
            key = stored.metadata.key
            if (key.block_id, key.module_hash) == wanted:
                found.append(stored)
        self._decoded[wanted] = found
        return found

    def entries(self) -> Iterator[StoredEntry]:
        """Every entry that verifies (damaged ones are skipped with a warning)."""
        for stored, _ in self._rows(keep_frames=False):
            yield stored

    def entry_frames(self) -> Iterator[tuple[StoredEntry, KeptFrame]]:
        """Every entry that verifies, with its record as written (`KeptFrame`):
        a cleanup copies the records of unchanged entries verbatim."""
        for stored, kept in self._rows(keep_frames=True):
            assert kept is not None
            yield stored, kept

    def _rows(self, *, keep_frames: bool) -> Iterator[tuple[StoredEntry, KeptFrame | None]]:
        """Walks the key table rather than the frames one after another: the
        table (checksummed itself) knows where every record starts, so a
        damaged record, even one whose length field was hit, costs only
        itself."""
        damaged = 0
        view = self._view[: self._tombstones_at]
        for table in self._keys.walked(self._table) if self._intact() else []:
            for row in range(len(table) // _ROW.size):
                row_hash, offset = _ROW.unpack_from(table, row * _ROW.size)
                payload = read_frame(view, offset)
                stored = None if payload is None else _decode_snapshot_entry(unpack(payload))
                if stored is None or payload is None:
                    damaged += 1
                elif keep_frames:
                    end = offset + FRAME.size + len(payload)
                    yield stored, KeptFrame(stored, row_hash, bytes(view[offset:end]))
                else:
                    yield stored, None
        if damaged:
            _damaged(self.path, f"{damaged} entry record(s) fail their checksum")

    def tombstones(self) -> dict[ExecutionKey, int]:
        """Keys deleted by cleanups, with when they were deleted."""
        if not self._intact():
            return {}
        payload = read_frame(self._view[: self._table_at], self._tombstones_at)
        found: dict[ExecutionKey, int] = {}
        if payload is None:
            _damaged(self.path, "its tombstone record fails its checksum")
            return found
        rows = unpack_any(payload)
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, list) and len(row) == 4 and is_timestamp(row[3]):
                key = key_from_fields(row[:3])
                if key is not None:
                    found[key] = row[3]
        return found

    def _entry_at(self, offset: int) -> StoredEntry | None:
        payload = read_frame(self._view[: self._tombstones_at], offset)
        return None if payload is None else _decode_snapshot_entry(unpack(payload))

    def close(self) -> None:
        """Release the memory map (entries already decoded stay valid)."""
        self._view.release()
        self._table.release()
        self._data.close()


def _decode_snapshot_entry(record: dict[str, Any] | None) -> StoredEntry | None:
    if record is None:
        return None
    last_access, hits = record.get("la"), record.get("hc")
    return decode_entry(
        record,
        None,
        last_access=last_access if is_timestamp(last_access) else None,
        hits=hits if is_timestamp(hits) else 0,  # a count: the same bounds as a time
    )


def _damaged(path: str, reason: str) -> None:
    warnings.warn(
        f"marimo_store: snapshot {path} is damaged ({reason}); it is ignored",
        StoreWarning,
        stacklevel=4,
    )


def _check(
    view: memoryview, size: int, *, lazy: bool
) -> str | tuple[dict[str, Any], tuple[int, int], TableDirectory | None]:
    """The header, frame offsets and (`lazy`) table directory of a snapshot,
    or what is wrong with it (docs/format.md §9.7)."""
    tombstones_at, table_at, _ = _FOOTER.unpack_from(view, size - _FOOTER.size)
    problem = _footer_problem(view[size - _FOOTER.size : size], size)
    if problem is not None:
        return problem
    region = view[: size - _FOOTER.size]
    head = read_frame(region[:tombstones_at], 0)
    if head is None:
        return "its header fails its checksum"
    header = unpack(head)
    length = len(region) - table_at - FRAME.size  # the table frame ends at the footer
    if length < 0 or length > MAX_RECORD_BYTES or FRAME.unpack_from(region, table_at)[0] != length:
        return "its key table fails its checksum"
    directory = None
    if lazy and length % _ROW.size == 0:
        found = read_table_directory(region[:table_at], tombstones_at, length // _ROW.size)
        directory = found if isinstance(found, TableDirectory) else None
    if directory is None and read_frame(region, table_at) is None:
        return "its key table fails its checksum"
    if header is None or not _valid_header(header) or length % _ROW.size:
        return "its header is malformed"
    header["id"] = content_digest(head).hex()
    return header, (tombstones_at, table_at), directory


def _footer_problem(footer: bytes | memoryview, size: int) -> str | None:
    """What is wrong with a snapshot's footer (its last bytes), or None."""
    tombstones_at, table_at, magic = _FOOTER.unpack_from(footer)
    if magic != _MAGIC:
        return "no snapshot footer"
    if not tombstones_at < table_at < size - _FOOTER.size:
        return "its layout is inconsistent"
    return None


def _valid_header(header: dict[str, Any]) -> bool:
    parents, ancestors = header.get("parents"), header.get("ancestors")
    consumed = header.get("consumed")
    return (
        header.get("t") == SNAPSHOT_TYPE
        and isinstance(header.get("v"), int)
        and is_timestamp(header.get("created_at"))
        and isinstance(header.get("writer", ""), str)
        and isinstance(parents, list)
        and all(isinstance(p, str) for p in parents)
        and isinstance(ancestors, dict)
        and all(isinstance(k, str) and is_timestamp(v) for k, v in ancestors.items())
        and isinstance(consumed, dict)
        and all(
            isinstance(k, str)
            and isinstance(v, list)
            and len(v) == 2
            and all(is_timestamp(n) for n in v)
            for k, v in consumed.items()
        )
    )


def encode_snapshot(state: StoreState, *, writer: str, created_at: int) -> tuple[str, bytes]:
    """The id and bytes of a snapshot of `state`.

    An entry still as a head held it (`state.frames`) keeps its record byte
    for byte; only the others are encoded."""
    live = state.live()
    kept = [state.frames.get(stored.metadata.key) for stored in live]
    hashes = [
        k.row_hash
        if k is not None and k.stored is s
        else computation_hash(s.metadata.key.block_id, s.metadata.key.module_hash)
        for s, k in zip(live, kept, strict=True)
    ]
    order = sorted(range(len(live)), key=lambda i: (hashes[i], live[i].metadata.created_at))
    entry_frames: list[bytes] = []
    for index in order:
        stored, known = live[index], kept[index]
        if known is not None and known.stored is stored:
            entry_frames.append(known.frame)
            continue
        record = encode_entry(stored, None)
        if stored.metadata.last_access is not None:
            record["la"] = stored.metadata.last_access
        if stored.metadata.hits:
            record["hc"] = stored.metadata.hits
        entry_frames.append(frame(pack(record)))
    tombstones = sorted([*_key_fields(key), at] for key, at in state.tombstones.items())
    tombstone_frame = frame(msgpack.packb(tombstones, use_bin_type=True))
    header = {
        "t": SNAPSHOT_TYPE,
        "v": SNAPSHOT_VERSION,
        "writer": writer,
        "created_at": created_at,
        "parents": sorted(state.heads),
        "ancestors": dict(sorted(state.ancestors.items())),
        "consumed": {name: list(value) for name, value in sorted(state.consumed.items())},
        "count": len(live),
        "body": "0" * 32,  # its length: the rows hold offsets, the directory their checksums
        "newest": max((s.metadata.created_at for s in live), default=0),
    }
    header_bytes = FRAME.size + len(pack(header))
    rows = bytearray()
    offset = header_bytes
    for index, entry_frame in zip(order, entry_frames, strict=True):
        rows += _ROW.pack(hashes[index], offset)
        offset += len(entry_frame)
    tombstones_at = offset
    table = bytes(rows)
    directory = directory_frame(table)
    body_hasher = content_hasher()
    for entry_frame in entry_frames:
        body_hasher.update(entry_frame)
    body_hasher.update(tombstone_frame)
    body_hasher.update(directory)
    header["body"] = body_hasher.hexdigest()
    header_payload = pack(header)
    assert FRAME.size + len(header_payload) == header_bytes
    table_at = tombstones_at + len(tombstone_frame) + len(directory)
    footer = _FOOTER.pack(tombstones_at, table_at, _MAGIC)
    data = b"".join(
        (frame(header_payload), *entry_frames, tombstone_frame, directory, frame(table), footer)
    )
    return content_digest(header_payload).hex(), data


class SnapshotSet:
    """Every verified snapshot file in `snapshots/` (`files`, conflicted
    copies of one snapshot included), which of them are `heads`, and the
    paths of files that failed verification (`damaged`)."""

    __slots__ = ("damaged", "files", "heads")

    def __init__(
        self, heads: list[SnapshotFile], files: list[SnapshotFile], damaged: list[str]
    ) -> None:
        self.heads = heads
        self.files = files
        self.damaged = damaged


def read_snapshots(directory: str, *, lazy: bool = False) -> SnapshotSet:
    """Open every snapshot; heads are those that are nobody's ancestor.
    `lazy`: for lookups (see `SnapshotFile.inspect`).

    Files that fail verification are ignored (with a warning): they cost
    at most the entries only they held, which read as misses. A file that
    cannot be read right now (EACCES, EIO) is skipped with a warning but not
    counted as damaged: nothing supersedes or quarantines it, and its
    entries come back once it reads again.
    """
    names = sorted(
        e.name for e in scan_real_directory(directory) if e.name.endswith(SNAPSHOT_SUFFIX)
    )
    files: list[SnapshotFile] = []
    damaged: list[str] = []
    for name in names:
        path = os.path.join(directory, name)
        snapshot, problem = SnapshotFile.inspect(path, lazy=lazy)
        if snapshot is not None:
            files.append(snapshot)
        elif problem is not None:  # not one that cannot be read right now: it may be fine
            _damaged(path, problem)
            damaged.append(path)
    superseded: set[str] = set()
    for snapshot in files:
        superseded.update(snapshot.ancestors)
        superseded.update(snapshot.parents)
    heads: dict[str, SnapshotFile] = {}
    for snapshot in files:
        if snapshot.id not in superseded:
            heads.setdefault(snapshot.id, snapshot)
    return SnapshotSet(sorted(heads.values(), key=lambda s: s.id), files, damaged)


def merge(heads: list[SnapshotFile]) -> StoreState:
    """The union of the heads' entries minus the union of their tombstones.

    Deterministic and independent of order: every rule is a union or a max.
    """
    state = StoreState(heads=[head.id for head in heads])
    for head in heads:
        for key, deleted_at in head.tombstones().items():
            state.add_tombstone(key, deleted_at)
    for head in heads:
        for stored, kept in head.entry_frames():
            state.add_entry(stored, kept)
            if stored.metadata.last_access is not None:
                state.add_access(stored.metadata.key, stored.metadata.last_access)
            if stored.metadata.hits:
                state.add_counted_hits(stored.metadata.key, stored.metadata.hits)
        for segment, (offset, seen) in head.consumed.items():
            known_offset, known_seen = state.consumed.get(segment, (0, 0))
            state.consumed[segment] = (max(offset, known_offset), max(seen, known_seen))
        for ancestor, created_at in head.ancestors.items():
            state.ancestors[ancestor] = max(created_at, state.ancestors.get(ancestor, 0))
        state.ancestors[head.id] = head.created_at
    return state
