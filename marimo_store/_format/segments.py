"""Segments as files: their names, header and close records.

A segment is `log/<writer>.<n>.log` (docs/format.md §3.2). Its first record
is the header (§6.3): the writer, the segment number and the environment its
entry records leave out; its identity is `<writer>.<n>` from that header,
never from the file name (sync tools rename files). Its last record, once
its writer is done with it, is the close record (§6.8). `segment_header`
and `header_frame` are the one place that knows the header's fields.

Implements W4, W5 (docs/format.md §14).
"""

from __future__ import annotations

from marimo_store._format.framing import FRAME, frame, pack, read_frame, unpack
from marimo_store._format.layout import FORMAT_VERSION
from marimo_store._retired import is_marker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from marimo_store._entry import Environment

MAX_HEADER_BYTES = 64 * 1024
"""A segment whose first record is not a header within this many bytes is not a segment."""

SEGMENT_SUFFIX = ".log"
HEADER_TYPE = "header"
CLOSE_TYPE = "close"

CLOSE_FRAME = frame(pack({"t": CLOSE_TYPE}))
"""The close record, framed: always these bytes, and always a segment's last record."""


def segment_file_name(writer_id: str, number: int) -> str:
    """The file name of segment `number` of a writer: `<writer>.<n>.log`."""
    return f"{writer_id}.{number}{SEGMENT_SUFFIX}"


def segment_header(writer_id: str, created_at: int, environment: Environment) -> dict[str, Any]:
    """The header fields every segment of one writer shares (§6.3):
    `header_frame` adds the segment number."""
    return {
        "t": HEADER_TYPE,
        "v": FORMAT_VERSION,
        "writer": writer_id,
        "created_at": created_at,
        "python": environment.python,
        "platform": environment.platform,
    }


def header_frame(header: dict[str, Any], number: int) -> bytes:
    """The framed header record of segment `number` of the writer of `header`."""
    return frame(pack({**header, "segment": number}))


class SegmentOpening:
    """What the first record of a segment file says.

    `header` and `segment_id` when it is a valid header (`end`: where the
    records after it start); otherwise `problem` says why the file is not a
    segment, or is empty while the file may still be a segment being created
    or synced (its first record incomplete and short enough).
    """

    __slots__ = ("end", "header", "problem", "segment_id")

    def __init__(
        self, header: dict[str, Any] | None, segment_id: str, end: int, problem: str
    ) -> None:
        self.header = header
        self.segment_id = segment_id
        self.end = end
        self.problem = problem


def read_header(data: memoryview) -> SegmentOpening:
    """Check the header record at the start of a segment's bytes."""
    if is_marker(data):  # retired by a cleanup (a store in git): no segment, no damage
        return SegmentOpening(None, "", 0, "")
    first = read_frame(data, 0)
    header = unpack(first) if first is not None else None
    segment_id = segment_id_of(header) if header else None
    if header is not None and header.get("t") == HEADER_TYPE and segment_id is not None:
        return SegmentOpening(header, segment_id, FRAME.size + len(first or b""), "")
    if first is not None or len(data) >= FRAME.size + MAX_HEADER_BYTES:
        return SegmentOpening(None, "", 0, "it does not start with a header")
    if len(data) >= FRAME.size and FRAME.unpack_from(data)[0] <= len(data):
        return SegmentOpening(None, "", 0, "its header fails its checksum")
    return SegmentOpening(None, "", 0, "")


def segment_id_of(header: dict[str, Any]) -> str | None:
    """`<writer>.<n>` for a valid segment header, else None."""
    writer, number = header.get("writer"), header.get("segment")
    if not isinstance(writer, str) or not writer or isinstance(number, bool):
        return None
    if not isinstance(number, int) or number < 0:
        return None
    return f"{writer}.{number}"


def writer_of(segment_id: str) -> tuple[str, int]:
    """The writer id and segment number of a segment id."""
    writer, _, number = segment_id.rpartition(".")
    return writer, int(number)


def writer_of_file(name: str) -> str | None:
    """The writer id in a segment's own file name `<writer>.<n>.log`, if it has one."""
    stem, dot, number = name.removesuffix(SEGMENT_SUFFIX).rpartition(".")
    return stem if dot and number.isdigit() and name.endswith(SEGMENT_SUFFIX) else None
