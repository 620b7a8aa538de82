"""Sealed segments: how a writer's records travel to an object store.

An object store cannot append, so a remote writer never extends a segment:
each flush of its records becomes one new object `log/<writer>.<n>.log`,
written with `put_once` and holding the header record, the records and the
close record (docs/format.md §3.2, §6.3, §6.8), the same bytes a local
writer's segment has once it is closed. The invariant: a reader applies a
segment only when it decodes whole, from its header to the close record as
its last bytes, so nothing partly uploaded (an object store never shows one
under its final name; a copied or damaged one may still be cut short) is
ever read as complete.
"""

from __future__ import annotations

from marimo_store._format.framing import frame, pack, parse_frames, unpack
from marimo_store._format.records import (
    LOG_RECORD_TYPES,
    KeyRecord,
    StoredEntry,
    decode_log_record,
)
from marimo_store._format.segments import CLOSE_FRAME, header_frame, read_header

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any


def seal(header: dict[str, Any], number: int, records: Iterable[dict[str, Any]]) -> bytes:
    """The bytes of sealed segment `number`: header, records, close record."""
    return b"".join(
        (header_frame(header, number), *(frame(pack(record)) for record in records), CLOSE_FRAME)
    )


def open_sealed(data: bytes) -> list[StoredEntry | KeyRecord] | None:
    """The entries, accesses and tombstones of a sealed segment, or None when
    `data` is not one whole (no header, damaged, or not closed at its end).
    Malformed records and records of other types are skipped."""
    view = memoryview(data)
    if not data.endswith(CLOSE_FRAME):
        return None
    opening = read_header(view)
    if opening.header is None:
        return None
    parsed = parse_frames(view, opening.end)
    if parsed.damaged or parsed.end != len(data):
        return None
    decoded: list[StoredEntry | KeyRecord] = []
    for payload in parsed.payloads[:-1]:  # the last is the close record
        record = unpack(payload)
        if record is None or record.get("t") not in LOG_RECORD_TYPES:
            continue
        found = decode_log_record(opening.header, record)
        if found is not None:
            decoded.append(found)
    return decoded
