"""Record framing: how every record of a segment or snapshot is written.

A record is framed as `u32 length | u64 xxh3-64(payload) | payload` (little
endian), the payload being one msgpack document. A reader stops a segment at
the first record that is incomplete (perhaps still being written) or fails
its checksum (damaged); everything before it stays valid.
"""

from __future__ import annotations

import struct

import msgpack

from marimo_store._hashing import record_checksum

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FRAME = struct.Struct("<IQ")
MAX_RECORD_BYTES = 256 * 1024 * 1024
"""Larger lengths are damage, not records: refusing them bounds allocation."""


def frame(payload: bytes) -> bytes:
    """A record as it is written to disk."""
    return FRAME.pack(len(payload), record_checksum(payload)) + payload


def pack(document: dict[str, Any]) -> bytes:
    """The msgpack encoding of one record payload."""
    return msgpack.packb(document, use_bin_type=True)  # type: ignore[no-any-return]


class ParsedFrames:
    """The good records at the start of a byte range, and where they end.

    `damaged`: a complete record failed its checksum or length check (not
    just a torn tail).
    """

    __slots__ = ("damaged", "end", "payloads")

    def __init__(self, payloads: list[memoryview], end: int, *, damaged: bool) -> None:
        self.payloads = payloads
        self.end = end
        self.damaged = damaged


def parse_frames(data: memoryview, start: int = 0) -> ParsedFrames:
    """Split `data[start:]` into verified record payloads."""
    payloads: list[memoryview] = []
    position = start
    size = len(data)
    while position + FRAME.size <= size:
        length, checksum = FRAME.unpack_from(data, position)
        body_start = position + FRAME.size
        if length > MAX_RECORD_BYTES:
            return ParsedFrames(payloads, position, damaged=True)
        body_end = body_start + length
        if body_end > size:
            break  # torn or still being written
        payload = data[body_start:body_end]
        if record_checksum(payload) != checksum:
            return ParsedFrames(payloads, position, damaged=True)
        payloads.append(payload)
        position = body_end
    return ParsedFrames(payloads, position, damaged=False)


def read_frame(data: memoryview, offset: int) -> memoryview | None:
    """The verified payload of the one record at `offset`, or None."""
    if offset < 0 or offset + FRAME.size > len(data):
        return None
    length, checksum = FRAME.unpack_from(data, offset)
    end = offset + FRAME.size + length
    if length > MAX_RECORD_BYTES or end > len(data):
        return None
    payload = data[offset + FRAME.size : end]
    return payload if record_checksum(payload) == checksum else None


def unpack_any(payload: memoryview) -> Any:
    """Decode a verified payload; None for bytes that are no msgpack document.

    A payload that passed its checksum may still come from a hostile
    writer: map keys that cannot be hashed (TypeError), nesting too deep
    for the decoder (ValueError) or trailing bytes are all just damage.
    """
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None


def unpack(payload: memoryview) -> dict[str, Any] | None:
    """Decode a verified payload; None for anything that is not a record map."""
    document = unpack_any(payload)
    return document if isinstance(document, dict) else None
