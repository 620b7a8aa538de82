"""The store's names as keys of a medium without directories (an object store).

A remote (docs/remote.md) holds the same files as a store directory
(docs/format.md §3), named by `/`-separated keys relative to its root:
objects at `objects/<id[0:2]>/<id[2:]>` (§3.3), sealed log segments at
`log/<writer>.<n>.log` (§3.2), the maintenance lease `locks/lease`, and
`quarantine/` for what a verify moves aside.
The invariant: these are the names `Layout` and `ObjectNames` give the same
files on disk, so a remote mirrored to a folder (or a folder uploaded) is a
store either way.
"""

from __future__ import annotations

from marimo_store._format.names import OBJECT_ID
from marimo_store._format.segments import SEGMENT_SUFFIX, segment_file_name

OBJECTS_PREFIX = "objects/"
SEGMENTS_PREFIX = "log/"
LEASE_KEY = "locks/lease"
"""The cleanup lease: taken with `put_once`, so one machine at a time collects garbage."""
QUARANTINE_PREFIX = "quarantine/"
"""Where a remote verify moves segments that do not decode (as `quarantine/` on disk)."""

_FAN_OUT = 2


def object_key(object_id: str) -> str:
    """The key of an object: two hex characters of fan-out, then the rest."""
    return f"{OBJECTS_PREFIX}{object_id[:_FAN_OUT]}/{object_id[_FAN_OUT:]}"


def object_id_of_key(key: str) -> str | None:
    """The object id a key under `objects/` names, only if it is one a put
    writes (32 hex digits, or 48 when qualified); None for any other key, so
    object GC never takes a stray key under `objects/` for an object."""
    rest = key.removeprefix(OBJECTS_PREFIX)
    fan, slash, name = rest.partition("/")
    if rest == key or not slash or len(fan) != _FAN_OUT:
        return None
    object_id = fan + name
    return object_id if OBJECT_ID.fullmatch(object_id) else None


def segment_key(writer_id: str, number: int) -> str:
    """The key of sealed segment `number` of a writer."""
    return SEGMENTS_PREFIX + segment_file_name(writer_id, number)


def is_segment_key(key: str) -> bool:
    """Whether a listed key names a segment (directly under `log/`)."""
    name = key.removeprefix(SEGMENTS_PREFIX)
    return name != key and "/" not in name and name.endswith(SEGMENT_SUFFIX)
