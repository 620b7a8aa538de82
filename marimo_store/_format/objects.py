"""Object names: `objects/<id[0:2]>/<id[2:]>` (docs/format.md §3.3).

`ObjectNames` is the one owner of the object directory's naming: the path
of an id, the listing of the objects stored (for object GC), the listing of
every file that claims to hold an object (for `verify()`: conflicted copies
and misplaced files included), and the name a damaged object gets in
`quarantine/` (§3.6). Reads, writes, cleanup and verify all ask it, so no
other module knows the fan-out.
"""

from __future__ import annotations

import os

from marimo_store._format.layout import quarantine_name, scan_real_directory
from marimo_store._hashing import HEX_DIGITS
from marimo_store._retired import is_retired

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

_FAN_OUT = 2
_ID_LENGTHS = (32, 48)


class ObjectNames:
    """The names of the objects under one `objects/` directory (`root`)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def path_of(self, object_id: str) -> str:
        """The file name of an object: two hex characters of fan-out, then the rest."""
        return os.path.join(self.root, object_id[:_FAN_OUT], object_id[_FAN_OUT:])

    def quarantine_name(self, path: str, at: int) -> str:
        """The name in `quarantine/` of the object file at `path` moved there at `at` (ms)."""
        return quarantine_name(path, at, objects=self.root)

    def stored(self) -> Iterator[tuple[str, str]]:
        """`(path, object id)` of every file with an object's name at its
        place (never through a symlinked directory: `scan_real_directory`).
        Other files are not objects: not ours to delete."""
        for fan in scan_real_directory(self.root):
            if len(fan.name) != _FAN_OUT or not fan.is_dir(follow_symlinks=False):
                continue
            if not set(fan.name) <= HEX_DIGITS:
                continue
            for item in scan_real_directory(fan.path):
                object_id = fan.name + item.name
                if len(object_id) in _ID_LENGTHS and set(item.name) <= HEX_DIGITS:
                    yield item.path, object_id

    def claimed(self) -> list[tuple[str, str, str | None]]:
        """`(path, claimed object id, how it was named)` for every file that
        names an object: None for a canonical name, else the sync tool that
        made the copy, or "a misplaced file" for an id directly in `objects/`.
        Retired files (`_retired.py`) are absent."""
        from marimo_store._conflicts import sync_copy_of  # noqa: PLC0415 - imports re
        from marimo_store._format.names import OBJECT_ID, OBJECT_NAME  # noqa: PLC0415

        found: list[tuple[str, str, str | None]] = []
        try:
            top = list(os.scandir(self.root))
        except (FileNotFoundError, NotADirectoryError):
            return found
        for entry in top:
            is_fan = len(entry.name) == _FAN_OUT and set(entry.name) <= HEX_DIGITS
            if entry.is_dir(follow_symlinks=False) and is_fan:
                for item in os.scandir(entry.path):
                    if not item.is_file(follow_symlinks=False):
                        continue
                    if is_retired(item.path, item.stat(follow_symlinks=False).st_size):
                        continue
                    if OBJECT_NAME.fullmatch(item.name):
                        found.append((item.path, entry.name + item.name, None))
                        continue
                    copy = sync_copy_of(item.name, OBJECT_NAME)
                    if copy is not None:
                        found.append((item.path, entry.name + copy[1], copy[0]))
            elif entry.is_file(follow_symlinks=False) and OBJECT_ID.fullmatch(entry.name):
                found.append((entry.path, entry.name, "a misplaced file"))
        return found
