"""The hash functions of the on-disk format, in one place.

xxh3 is not cryptographic; it guards against damage (torn writes, bit rot,
sync tools), not against an attacker, and it runs at memory speed (about
17 GB/s here), so every read can afford to verify what it loads.
"""

from __future__ import annotations

import xxhash

TYPE_CHECKING = False
if TYPE_CHECKING:
    import mmap
    from typing import TypeAlias

    Buffer: TypeAlias = bytes | bytearray | memoryview | mmap.mmap
    """What the hashers accept without copying (`collections.abc.Buffer` needs 3.12)."""

CONTENT_HASH_BYTES = 16
"""Length of an object's content hash (xxh3-128)."""
HEX_DIGITS = frozenset("0123456789abcdef")
"""The digits of every hash and id the format writes as text (lower case)."""


def content_hasher() -> xxhash.xxh3_128:
    """A streaming hasher for object contents."""
    return xxhash.xxh3_128()


def content_digest(data: Buffer) -> bytes:
    """xxh3-128 of a buffer, without copying it."""
    return xxhash.xxh3_128_digest(data)


def record_checksum(payload: Buffer) -> int:
    """xxh3-64 of a record payload, stored in front of every framed record."""
    return xxhash.xxh3_64_intdigest(payload)


def text_digest(text: str) -> bytes:
    """xxh3-64 of a string, for short qualifiers that need not be unique globally."""
    return xxhash.xxh3_64_digest(text.encode("utf-8"))
