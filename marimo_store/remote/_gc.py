"""Cleanup of a remote: segment compaction and object GC, safe while
other machines put.

An object store has no lock, so one machine at a time collects garbage by
holding a lease (`_lease.py`): the object `locks/lease`, taken with
`put_once` (a second taker finds it there and does nothing), naming its
holder and when it lapses, so a crashed holder blocks nobody for longer
than `lease_seconds`.

Another machine's put writes (or finds) its objects first and its segment
after, so an object can be referenced by a segment that is not listed yet.
The invariant: an object is deleted only if it is older than
`grace_seconds`, no entry referenced it at a first listing, and no entry
references it at a second listing taken `recheck_seconds` later: a put
whose segment lands within that time keeps its objects. (A put slower than
that loses an object it found already there; its entry is then a miss,
never a wrong value.) Tombstoned entries free their objects here.

Segments pile up, one per put; compaction (under the same lease) puts one
new sealed segment holding every live entry and every tombstone listed,
then deletes the segments it merged. A segment put meanwhile was not
listed, so it is neither merged nor deleted; a reader that listed an old
segment just before its deletion misses its entries until its next
listing (which finds the merged one), never sees a wrong value.
"""

from __future__ import annotations

import time

from marimo_store._format.keys import OBJECTS_PREFIX, object_id_of_key
from marimo_store._format.records import TOMBSTONE_TYPE, encode_entry, encode_key_record
from marimo_store._value import Value
from marimo_store.remote._lease import new_holder, release_lease, take_lease
from marimo_store.remote._writer import RemoteWriter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from marimo_store.remote.store import RemoteStore


class RemoteGcReport(Value):
    """What one cleanup did: `segments_merged` into one, `deleted` objects
    and their `freed_bytes`, `kept` unreferenced ones (too young, or
    referenced at the re-check), or `busy` when another machine held the
    lease (then nothing was done)."""

    __slots__ = ("busy", "segments_merged", "deleted", "freed_bytes", "kept")
    busy: bool
    segments_merged: int
    deleted: int
    freed_bytes: int
    kept: int

    def __init__(
        self,
        *,
        busy: bool,
        segments_merged: int = 0,
        deleted: int = 0,
        freed_bytes: int = 0,
        kept: int = 0,
    ) -> None:
        self._assign(
            busy=busy,
            segments_merged=segments_merged,
            deleted=deleted,
            freed_bytes=freed_bytes,
            kept=kept,
        )


def _referenced(store: RemoteStore) -> set[str]:
    store.catalog.refresh(force=True)
    with store.catalog.lock:
        return {
            object_id for stored in store.catalog.index for object_id in stored.metadata.objects()
        }


def _compact(store: RemoteStore) -> int:
    """Merge every listed segment into one new one; how many were merged."""
    catalog = store.catalog
    catalog.refresh(force=True)
    with catalog.lock:
        merged = catalog.applied()
        live = list(catalog.index)
        tombstones = dict(catalog.tombstones)
    if len(merged) < 2:
        return 0
    writer = RemoteWriter(store.medium)
    records = [encode_entry(stored, writer.context) for stored in live]
    records += [encode_key_record(TOMBSTONE_TYPE, run, at) for run, at in tombstones.items()]
    catalog.apply(writer.flush(records), [])  # its records are in the index already
    for key in merged:
        store.medium.delete(key)
    return len(merged)


def collect_garbage(
    store: RemoteStore,
    *,
    grace_seconds: float = 3600.0,
    recheck_seconds: float = 60.0,
    lease_seconds: float = 3600.0,
) -> RemoteGcReport:
    """Delete the remote's objects no live entry references (see the module docstring)."""
    holder = new_holder()
    if not take_lease(store.medium, holder, lease_seconds):
        return RemoteGcReport(busy=True)
    try:
        merged = _compact(store)
        referenced = _referenced(store)
        old_before = time.time_ns() - int(grace_seconds * 1e9)
        candidates = {}
        kept = 0
        for info in store.medium.list(OBJECTS_PREFIX):
            object_id = object_id_of_key(info.key)
            if object_id is None or object_id in referenced:
                continue
            if info.modified_ns > old_before:
                kept += 1  # young: perhaps an entry not listed yet is using it
            else:
                candidates[info.key] = (object_id, info)
        if candidates:
            time.sleep(recheck_seconds)
            referenced = _referenced(store)
        deleted = freed = 0
        for key, (object_id, info) in candidates.items():
            if object_id in referenced:
                kept += 1
                continue
            store.medium.delete(key)
            deleted += 1
            freed += info.size
        return RemoteGcReport(
            busy=False, segments_merged=merged, deleted=deleted, freed_bytes=freed, kept=kept
        )
    finally:
        release_lease(store.medium, holder)
