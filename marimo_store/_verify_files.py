"""What `verify()` (`_verify.py`) learns about each file it reads.

A `Problem` is one finding while the pass runs (the repair fills in its
action; `verify_store` turns each into a public `VerifyProblem`). An
`ObjectFile` is an object file (or a copy of one) and what hashing it
showed; a `SegmentFile` a segment and where its good records end. A file's
identity (device, inode, size, mtime) is taken when it is checked, and a
repair moves a file only while its identity is unchanged: verify never
moves what another process changed meanwhile.
"""

from __future__ import annotations

import mmap
import os
import time
from enum import Enum

from marimo_store import _fs
from marimo_store._hashing import content_digest

_SETTLE_SECONDS = 0.05
"""How long a torn segment tail must stay unchanged to count as final."""


class Kind(str, Enum):
    """Every kind of finding `verify()` reports, as a typed value (as restic
    types its pack errors); `VerifyProblem.kind` carries its text."""

    SYMLINK = "symlink"
    CONFLICTED_COPY = "conflicted copy"
    MISNAMED_OBJECT = "misnamed object"
    DAMAGED_OBJECT = "damaged object"
    QUARANTINED_OBJECT = "quarantined object"
    DAMAGED_SNAPSHOT = "damaged snapshot"
    DAMAGED_SEGMENT = "damaged segment"
    TORN_SEGMENT = "torn segment"
    MALFORMED_RECORDS = "malformed records"
    DANGLING_ENTRY = "dangling entry"
    DAMAGED_FORMAT = "damaged format.json"
    DAMAGED_GITIGNORE = "damaged .gitignore"
    INCOMPLETE_GITIGNORE = "incomplete .gitignore"
    DAMAGED_GITATTRIBUTES = "damaged .gitattributes"
    INCOMPLETE_GITATTRIBUTES = "incomplete .gitattributes"
    STALE_TEMP_FILE = "stale temp file"
    UNKNOWN_KEY = "unknown key"
    LEFTOVER_LEASE = "leftover lease"


class Problem:
    """A problem while the pass runs: its action is filled in by the repair."""

    __slots__ = ("action", "detail", "kind", "path")

    def __init__(self, kind: Kind, path: str, detail: str) -> None:
        self.kind, self.path, self.detail, self.action = kind, path, detail, ""


class ObjectFile:
    """An object file (or a copy of one) and what hashing it showed."""

    __slots__ = ("claimed", "digest", "finding", "identity", "path", "tool")

    def __init__(self, path: str, claimed: str, tool: str | None) -> None:
        self.path = path
        self.claimed = claimed
        self.tool = tool
        self.digest = ""
        self.identity: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.finding: Problem | None = None

    @property
    def holds_claimed(self) -> bool:
        return self.digest == self.claimed[:32]


class SegmentFile:
    """A segment file as verify read it: `end` is where its good records end."""

    __slots__ = ("closed", "damaged", "end", "path", "segment_id", "size")

    def __init__(
        self, path: str, segment_id: str, end: int, size: int, *, damaged: bool, closed: bool
    ) -> None:
        self.path, self.segment_id, self.end, self.size = path, segment_id, end, size
        self.damaged, self.closed = damaged, closed

    @property
    def torn(self) -> bool:
        return not self.damaged and self.end < self.size


def link_target(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def stays_the_same(path: str, size: int) -> bool:
    """Whether a file still has `size` bytes a moment later (no append under way)."""
    time.sleep(_SETTLE_SECONDS)
    try:
        return os.stat(path).st_size == size
    except FileNotFoundError:
        return False


def file_identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def hash_file(path: str) -> tuple[str, tuple[int, int, int, int]] | None:
    """xxh3-128 hex of a file's bytes (memory-mapped, no copy), and its identity."""
    try:
        with _fs.open_read(path) as file:
            stat = os.fstat(file.fileno())
            if stat.st_size == 0:
                return content_digest(b"").hex(), file_identity(stat)
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return content_digest(data).hex(), file_identity(stat)
    except (OSError, ValueError):
        return None
