"""A remote writer: this process's writer id and the numbers of its segments.

Every flush is a new sealed segment `log/<writer>.<n>.log` with the next
`n`, put with `put_once`: segments are never appended to or overwritten,
so writers on any number of machines never touch each other's objects.
The invariant: a writer id belongs to one process (`new_writer_id` holds
the host, the pid and 48 random bits; a forked child makes its own), and
a number is used once, so a `put_once` that finds its key taken means
something else wrote there, and the flush fails rather than guess.
"""

from __future__ import annotations

import itertools
import os

from marimo_store._entry import Environment, now_ms
from marimo_store._environment import platform_tag, python_version
from marimo_store._errors import StoreIOError
from marimo_store._format.keys import segment_key
from marimo_store._format.segments import segment_header
from marimo_store._log import new_writer_id
from marimo_store.remote._segments import seal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from marimo_store._media import Medium


class RemoteWriter:
    """Seals records into new segments of one writer on `medium`."""

    def __init__(self, medium: Medium) -> None:
        self.medium = medium
        self.pid = os.getpid()
        self.writer_id = new_writer_id()
        self.context = Environment(python_version(), platform_tag())
        self.header = segment_header(self.writer_id, now_ms(), self.context)
        self._numbers = itertools.count()

    def flush(self, records: Sequence[dict[str, Any]]) -> str:
        """Put `records` as the next sealed segment; its key."""
        number = next(self._numbers)
        key = segment_key(self.writer_id, number)
        if not self.medium.put_once(key, (seal(self.header, number, records),)):
            raise StoreIOError(f"{self.medium!r}: segment {key} is already taken")
        return key
