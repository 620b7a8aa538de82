"""The live index of a remote: every sealed segment listed, read once, applied.

A reader lists `log/` (one request per thousand segments), downloads only
the segments it has not applied yet (or takes them from the local
`SegmentCache`), decodes them whole and applies their entries, tombstones
and accesses to an `EntryIndex`, the same index a store directory's
readers use, with the same rules (a tombstone wins whatever the order, a
clash between writers is decided by `winner`). Listing is throttled to one
per `refresh_interval`: within it a miss costs no request at all (the
negative-lookup cache). The invariant: a segment is applied at most once,
and only whole (`open_sealed`); all index reads and changes hold `lock`,
while downloads run outside it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from marimo_store._errors import InvalidArgumentError
from marimo_store._format.keys import SEGMENTS_PREFIX, is_segment_key
from marimo_store._format.records import TOMBSTONE_TYPE, KeyRecord
from marimo_store._index import EntryIndex
from marimo_store._media import MediumMissing
from marimo_store.remote._segments import open_sealed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from marimo_store._entry import ExecutionKey
    from marimo_store._format.records import StoredEntry
    from marimo_store._media import Medium
    from marimo_store.remote._segment_cache import SegmentCache

_PARALLEL_DOWNLOADS = 8


class RemoteCatalog:
    """What a remote holds, as far as this process has listed it."""

    def __init__(self, medium: Medium, cache: SegmentCache, refresh_interval: float) -> None:
        self.medium = medium
        self.cache = cache
        self.refresh_interval = refresh_interval
        self.index = EntryIndex()
        self.lock = threading.RLock()
        self._applied: set[str] = set()
        self.tombstones: dict[ExecutionKey, int] = {}
        """Every tombstone applied, newest time per run (compaction keeps them)."""
        self._listed_at = -float("inf")
        self._refreshing = threading.Lock()

    @property
    def stale(self) -> bool:
        """Whether the next lookup should list the remote again."""
        return time.monotonic() - self._listed_at >= self.refresh_interval

    def refresh(self, *, force: bool = False) -> None:
        """List the remote and apply the segments not applied yet (at most
        once per `refresh_interval` unless `force`). `MediumError` when the
        remote cannot be listed; a segment that vanished is skipped."""
        with self._refreshing:
            if not force and not self.stale:
                return
            started = time.monotonic()
            new = [
                info.key
                for info in self.medium.list(SEGMENTS_PREFIX)
                if is_segment_key(info.key) and info.key not in self._applied
            ]
            with ThreadPoolExecutor(max_workers=_PARALLEL_DOWNLOADS) as pool:
                for key, records in zip(new, pool.map(self._load, new), strict=True):
                    if records is not None:
                        self.apply(key, records)
            self._listed_at = started

    def _load(self, key: str) -> list[StoredEntry | KeyRecord] | None:
        """The records of one segment, from the local cache or the remote;
        None when it vanished (a cleanup) or is not a whole sealed segment."""
        cached = self.cache.get(key)
        if cached is not None:
            records = open_sealed(cached)
            if records is not None:
                return records
            self.cache.forget(key)
        try:
            data = self.medium.read(key)
        except (MediumMissing, InvalidArgumentError):  # gone, or a name no store writes
            return None
        records = open_sealed(data)
        if records is not None:
            self.cache.keep(key, data)
        else:
            with self.lock:
                self._applied.add(key)  # sealed bytes never change: never again
        return records

    def applied(self) -> set[str]:
        """The keys of the segments applied (or found not whole) so far."""
        with self.lock:
            return set(self._applied)

    def apply(self, key: str, records: Iterable[StoredEntry | KeyRecord]) -> None:
        """Apply one segment's records (this writer's own, or one read)."""
        with self.lock:
            if key in self._applied:
                return
            self._applied.add(key)
            index = self.index
            for record in records:
                if not isinstance(record, KeyRecord):
                    index.add_entry(record)
                elif record.kind == TOMBSTONE_TYPE:
                    index.add_tombstone(record.key, record.at)
                    self.tombstones[record.key] = max(record.at, self.tombstones.get(record.key, 0))
                else:
                    index.add_access(record.key, record.at, record.hits)
