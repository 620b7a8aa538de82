"""The local copies of a remote's sealed segments.

A sealed segment never changes once it is under its name (`put_once`), so a
reader keeps each one it decoded in a local directory by that name and
never downloads it again, in this process or a later one: a new process
pays one listing, not one request per segment. The invariant: only bytes
that decoded whole (`open_sealed`) are kept, each written to a temporary
name and renamed, so the cache holds whole segments or nothing; a damaged
copy is deleted and fetched again.
"""

from __future__ import annotations

import contextlib
import os

from marimo_store._format.keys import SEGMENTS_PREFIX


class SegmentCache:
    """Sealed segments by key in `directory` (None: keep nothing)."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory

    def _path(self, key: str) -> str | None:
        if self.directory is None:
            return None
        return os.path.join(self.directory, key.removeprefix(SEGMENTS_PREFIX))

    def get(self, key: str) -> bytes | None:
        """The cached bytes of the segment `key`, or None."""
        path = self._path(key)
        if path is None:
            return None
        try:
            with open(path, "rb") as file:
                return file.read()
        except OSError:
            return None

    def keep(self, key: str, data: bytes) -> None:
        """Remember a segment that decoded whole (a failure only costs a download)."""
        path = self._path(key)
        if path is None:
            return
        partial = f"{path}.{os.getpid()}.partial"
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(partial, "wb") as file:
                file.write(data)
            os.replace(partial, path)

    def forget(self, key: str) -> None:
        """Drop a cached copy that did not decode."""
        path = self._path(key)
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
