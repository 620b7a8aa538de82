"""Cutting finished blobs where equal data is likely, so it is stored once.

marimo hands its store finished bytes: a pickle of a whole cache entry, or
an `.npy` file. Two entries holding the same array differ in their headers
(names, hashes), so as whole blobs they share nothing. Inside, though, a
pickle (protocol 4 and 5, what marimo writes) puts an array's memory in
one opcode, `BYTEARRAY8`, `BINBYTES8` or `BINBYTES` followed by a length and
the raw bytes; an `.npy` file puts them after a short header. Cutting at
those places makes the raw data a piece of its own, which the store keeps
as an object named by its hash: the same array in two blocks, in two runs,
or in a pickle and an `.npy`, is one file on disk.

The cuts never change what is stored: the pieces joined are the original
bytes, whatever the cuts were. A wrong guess (an opcode byte that is really
part of some other data) costs only the sharing, never correctness, and
nothing is unpickled or executed to find them.
"""

from __future__ import annotations

import functools

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re

MIN_PIECE_BYTES = 64 * 1024
"""Only data at least this large is cut out (the store's out-of-band limit)."""

_MAX_FALSE_CANDIDATES = 10_000
"""Opcode-like bytes that turned out not to start a payload, per blob,
before the rest of it is left whole: bounds the cost (a few milliseconds)
for data full of them, such as a long text of capital Bs."""

_NPY_MAGIC = b"\x93NUMPY"
_BINBYTES = 0x42  # followed by a 4-byte length; BYTEARRAY8 and BINBYTES8 by 8 bytes


@functools.cache
def _opcode_pattern() -> re.Pattern[bytes]:
    import re  # noqa: PLC0415 - only marimo blobs need it

    # BYTEARRAY8 (0x96) or BINBYTES8 (0x8e) with a length below 2**40 (its
    # three high bytes zero), or BINBYTES ('B') with any 4-byte length.
    return re.compile(rb"[\x96\x8e][\x00-\xff]{5}\x00\x00\x00|B[\x00-\xff]{4}")


def split_blob(data: bytes) -> tuple[bytes | memoryview, ...]:
    """`data` as pieces whose concatenation is `data`, large raw data cut out."""
    if len(data) < MIN_PIECE_BYTES:
        return (data,)
    if data.startswith(_NPY_MAGIC):
        return _split_npy(data)
    return _split_pickle(data)


def _split_npy(data: bytes) -> tuple[bytes | memoryview, ...]:
    """Header and array data of an `.npy` file (format versions 1 to 3)."""
    major = data[6] if len(data) > 6 else 0
    if major == 1:
        start = 10 + int.from_bytes(data[8:10], "little")
    elif major in (2, 3):
        start = 12 + int.from_bytes(data[8:12], "little")
    else:
        return (data,)
    if len(data) - start < MIN_PIECE_BYTES:
        return (data,)
    view = memoryview(data)
    return (view[:start], view[start:])


def _split_pickle(data: bytes) -> tuple[bytes | memoryview, ...]:
    """Cut out the payload of every large binary opcode of a pickle stream.

    Only the bytes between payloads are searched, so a large payload is
    skipped in one step however much it resembles opcodes inside.
    """
    view = memoryview(data)
    pattern = _opcode_pattern()
    pieces: list[bytes | memoryview] = []
    done = misses = 0
    found = pattern.search(data)
    while found is not None and misses < _MAX_FALSE_CANDIDATES:
        at = found.start()
        start = at + (5 if data[at] == _BINBYTES else 9)
        end = start + int.from_bytes(data[at + 1 : start], "little")
        if end - start >= MIN_PIECE_BYTES and end <= len(data):
            pieces += (view[done:start], view[start:end])
            done = end
            found = pattern.search(data, end)
        else:
            misses += 1
            found = pattern.search(data, at + 1)
    if not pieces:
        return (data,)
    pieces.append(view[done:])
    return tuple(pieces)
