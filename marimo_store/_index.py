"""The in-memory view of the live entries that `get` consults.

It is a snapshot (memory-mapped, entries decoded only when asked for) plus
what the log added since: the sealed segments with a key index (looked up,
records decoded only when asked for) and, decoded, the records of the other
segments: new entries, tombstones and access times. Opening a store
therefore costs the same with ten entries or a million.

Implements R4, R5 (docs/format.md §14).
Implements K4 (docs/format.md §16).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from marimo_store._entry import ExecutionKey
from marimo_store._format.records import ACCESS_TYPE, StoredEntry, winner
from marimo_store._snapshot import SnapshotFile, StoreState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeVar

    from marimo_store._indexed_segments import IndexedSegment

    T = TypeVar("T")

_NOTHING: tuple[dict[int, StoredEntry], dict[int, int]] = ({}, {})
"""What the indexed segments hold of most computations (shared, never changed)."""


def newest_first(runs: Mapping[int, T], limit: int | None) -> list[T]:
    """The runs (by `created_at`) at or before `limit` (all when None), newest first."""
    return [
        runs[created_at]
        for created_at in sorted(runs, reverse=True)
        if limit is None or created_at <= limit
    ]


class EntryIndex:
    """Entries by computation `(block_id, module_hash)`, then by `created_at`."""

    def __init__(self, base: SnapshotFile | None = None, merged: StoreState | None = None) -> None:
        self._base = base
        self._added: dict[tuple[str, str], dict[int, StoredEntry]] = {}
        self._removed: dict[ExecutionKey, int] = {}
        self._accessed: dict[ExecutionKey, int] = {}
        self._counted_hits: dict[ExecutionKey, int] = {}
        """Hits of entries as the merged heads counted them (else the entry's own)."""
        self._new_hits: dict[ExecutionKey, int] = {}
        """Hits that access records read after the snapshot add."""
        self.log_entries = 0
        """Entry records the log added on top of the snapshot (a cleanup trigger)."""
        self.oldest_log_entry: int | None = None
        """`created_at` of the oldest of those (the other trigger)."""
        self._newest_added = 0
        self._base_tombstones_pending = base is not None
        self._indexed: list[IndexedSegment] = []
        self._from_indexed: dict[tuple[str, str], tuple[dict[int, StoredEntry], dict[int, int]]]
        self._from_indexed = {}
        """Per computation looked up: its runs and tombstones in `_indexed`."""
        self._sources: dict[str, list[StoredEntry]] = {}
        """Entries kept decoded, by the name of the segment file they came from."""
        if merged is not None:
            for stored in merged.entries.values():
                self._insert(stored)
            self._removed.update(merged.tombstones)
            self._accessed.update(merged.last_access)
            self._counted_hits.update(merged.hits)

    @property
    def base_truncated(self) -> bool:
        """The snapshot under this index was cut short in place: rebuild."""
        return self._base is not None and self._base.truncated

    def add_indexed(self, segment: IndexedSegment) -> None:
        """A sealed segment looked up through its key index, never decoded
        whole. One read so far record by record (`followed`) replaces the
        entries it added (counted already): memory stays flat however long
        a reader follows a writer, or a writer writes."""
        self._indexed.append(segment)
        self._from_indexed.clear()
        if segment.followed:
            for stored in self._sources.pop(segment.name, ()):
                key = stored.metadata.key
                runs = self._added.get((key.block_id, key.module_hash))
                if runs is not None and runs.get(stored.metadata.created_at) is stored:
                    del runs[stored.metadata.created_at]
                    if not runs:
                        del self._added[key.block_id, key.module_hash]
            return
        self._newest_added = max(self._newest_added, segment.newest)
        self.log_entries += segment.entries
        oldest = segment.oldest
        if oldest is not None and (self.oldest_log_entry is None or oldest < self.oldest_log_entry):
            self.oldest_log_entry = oldest

    def kept_decoded(self) -> int:
        """How many entries the log added are held decoded (what grows with
        the entries read: the tests bound it)."""
        return sum(map(len, self._added.values()))

    def _in_indexed(
        self, block_id: str, module_hash: str
    ) -> tuple[dict[int, StoredEntry], dict[int, int]]:
        """The runs and tombstones (`created_at` -> `deleted_at`) of one
        computation in the indexed segments, decoded once."""
        if not self._indexed:
            return _NOTHING
        wanted = (block_id, module_hash)
        found = self._from_indexed.get(wanted)
        if found is None:
            runs: dict[int, StoredEntry] = {}
            removed: dict[int, int] = {}
            for segment in self._indexed:
                for decoded in segment.lookup(block_id, module_hash):
                    if isinstance(decoded, StoredEntry):
                        created_at = decoded.metadata.created_at
                        present = runs.get(created_at)
                        runs[created_at] = decoded if present is None else winner(present, decoded)
                    else:
                        created_at = decoded.key.created_at or 0
                        removed[created_at] = max(decoded.at, removed.get(created_at, 0))
            found = (runs, removed) if runs or removed else _NOTHING
            self._from_indexed[wanted] = found
        return found

    def add_entry(self, stored: StoredEntry, source: str = "") -> None:
        """An entry record read from the log (or just written), from the
        segment file named `source` (kept until that segment's index
        replaces it, see `add_indexed`)."""
        if self._removed_here(stored.metadata.key):
            self._newest_added = max(self._newest_added, stored.metadata.created_at)
            return
        self._insert(stored)
        if source:
            self._sources.setdefault(source, []).append(stored)
        self.log_entries += 1
        created_at = stored.metadata.created_at
        if self.oldest_log_entry is None or created_at < self.oldest_log_entry:
            self.oldest_log_entry = created_at

    def newest_created_at(self) -> int:
        """The largest `created_at` of every entry seen (tombstoned ones
        included): the hybrid logical clock a put orders its run after."""
        base = self._base
        if base is None:
            return self._newest_added
        if base.newest is None:  # a snapshot of an older writer: decode it once
            base.newest = max((s.metadata.created_at for s in base.entries()), default=0)
        return max(self._newest_added, base.newest)

    def _insert(self, stored: StoredEntry) -> None:
        self._newest_added = max(self._newest_added, stored.metadata.created_at)
        key = stored.metadata.key
        runs = self._added.setdefault((key.block_id, key.module_hash), {})
        present = runs.get(stored.metadata.created_at)
        runs[stored.metadata.created_at] = stored if present is None else winner(present, stored)

    def is_removed(self, key: ExecutionKey) -> bool:
        """Whether a tombstone covers exactly this run."""
        if self._removed_here(key):
            return True
        return key.created_at in self._in_indexed(key.block_id, key.module_hash)[1]

    def _removed_here(self, key: ExecutionKey) -> bool:
        """Whether a tombstone outside the indexed segments covers this run."""
        return key in self._tombstones()

    def _tombstones(self) -> dict[ExecutionKey, int]:
        """The tombstones outside the indexed segments, the snapshot's
        loaded at the first log entry they may cover."""
        if self._base_tombstones_pending:
            # Only now: opening stays O(1), and a segment that a sync tool
            # brings back after a cleanup must not resurrect what it dropped.
            self._base_tombstones_pending = False
            assert self._base is not None
            for removed, deleted_at in self._base.tombstones().items():
                self.add_tombstone(removed, deleted_at)
        return self._removed

    def add_tombstone(self, key: ExecutionKey, deleted_at: int) -> None:
        """A tombstone: the entry is gone whatever else says it exists."""
        self._removed[key] = max(deleted_at, self._removed.get(key, 0))

    def add_access(self, key: ExecutionKey, accessed_at: int, hits: int = 0) -> None:
        """An access record: keeps the latest time an entry was read, and
        adds the hits it counts."""
        if accessed_at > self._accessed.get(key, 0):
            self._accessed[key] = accessed_at
        if hits:
            self._new_hits[key] = self._new_hits.get(key, 0) + hits

    def _runs(self, block_id: str, module_hash: str) -> dict[int, StoredEntry]:
        runs: dict[int, StoredEntry] = {}
        if self._base is not None:
            for stored in self._base.lookup(block_id, module_hash):
                runs[stored.metadata.created_at] = stored
        indexed, removed = self._in_indexed(block_id, module_hash)
        for added in (self._added.get((block_id, module_hash), {}), indexed):
            for created_at, stored in added.items():
                present = runs.get(created_at)
                runs[created_at] = stored if present is None else winner(present, stored)
        tombstones = self._tombstones() if indexed else self._removed
        if tombstones or removed:
            for created_at in list(runs):
                key = ExecutionKey(block_id, module_hash, created_at)
                if key in tombstones or created_at in removed:
                    del runs[created_at]
        return runs

    def exact(self, key: ExecutionKey) -> StoredEntry | None:
        """The entry stored under exactly `key` (which must have `created_at`)."""
        if key.created_at is None:
            return None
        return self._runs(key.block_id, key.module_hash).get(key.created_at)

    def runs(self, key: ExecutionKey, *, exact: bool) -> list[StoredEntry]:
        """Candidate runs for `key`, newest first.

        `exact`: only the run at `key.created_at`. Otherwise every run at or
        before `key.created_at` (all runs when it is None).
        """
        if exact:
            found = self.exact(key)
            return [] if found is None else [found]
        return newest_first(self._runs(key.block_id, key.module_hash), key.created_at)

    def _read_indexed(
        self,
        added: list[StoredEntry],
        removed: dict[ExecutionKey, int],
        accessed_at: dict[ExecutionKey, int],
        new_hits: dict[ExecutionKey, int],
    ) -> None:
        """Decode every indexed segment into `__iter__`'s working copies."""
        for segment in self._indexed:
            for decoded in segment.records():
                if isinstance(decoded, StoredEntry):
                    added.append(decoded)
                elif segment.followed:
                    continue  # applied when it was read
                elif decoded.kind != ACCESS_TYPE:
                    removed[decoded.key] = max(decoded.at, removed.get(decoded.key, 0))
                else:
                    accessed_at[decoded.key] = max(decoded.at, accessed_at.get(decoded.key, 0))
                    new_hits[decoded.key] = new_hits.get(decoded.key, 0) + decoded.hits

    def __iter__(self) -> Iterator[StoredEntry]:
        """Every live entry, with its latest access time (decodes the
        snapshot and the indexed segments, keeping none of them)."""
        merged: dict[ExecutionKey, StoredEntry] = {}
        if self._base is not None:
            for stored in self._base.entries():
                merged[stored.metadata.key] = stored
        removed = dict(self._tombstones() if self._indexed else self._removed)
        accessed_at = dict(self._accessed)
        new_hits: dict[ExecutionKey, int] = {}
        added = [stored for runs in self._added.values() for stored in runs.values()]
        self._read_indexed(added, removed, accessed_at, new_hits)
        for stored in added:
            present = merged.get(stored.metadata.key)
            merged[stored.metadata.key] = stored if present is None else winner(present, stored)
        for key, stored in merged.items():
            if key in removed:
                continue
            metadata = stored.metadata
            accessed = max(accessed_at.get(key, 0), metadata.last_access or 0) or None
            hits = (
                self._counted_hits.get(key, metadata.hits)
                + self._new_hits.get(key, 0)
                + new_hits.get(key, 0)
            )
            if accessed != metadata.last_access or hits != metadata.hits:
                metadata = metadata.replace(last_access=accessed, hits=hits)
                yield StoredEntry(metadata, stored.inline)
            else:
                yield stored
