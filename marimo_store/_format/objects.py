"""Object names: `objects/<id[0:2]>/<id[2:]>` (docs/format.md §3.3).

`ObjectNames` is the one owner of the object directory's naming: the path
of an id, the listing of the objects stored (for object GC), the listing of
every file that claims to hold an object (for `verify()`: conflicted copies
and misplaced files included), and the name a damaged object gets in
`quarantine/` (§3.6). Reads, writes, cleanup and verify all ask it, so no
other module knows the fan-out.

The directory is a medium (`marimo_store._media`, docs/format.md §15) of
its own: an object's key in it is `<id[0:2]>/<id[2:]>` (`key_of`), and
writes and listings go through the medium (`LocalMedium`: the local file
system, through `_fs`), so the same names serve a medium that is not a
local directory.
"""

from __future__ import annotations

import os

from marimo_store._format.layout import quarantine_name, scan_real_directory
from marimo_store._hashing import HEX_DIGITS
from marimo_store._retired import is_retired

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from marimo_store._media.local import LocalMedium

_FAN_OUT = 2
_ID_LENGTHS = (32, 48)


class ObjectNames:
    """The names of the objects under one `objects/` directory (`root`).

    `medium` holds them; `temp_path` and `durable` are its (see
    `LocalMedium`): without `temp_path` it only reads, lists and deletes.
    """

    def __init__(
        self, root: str, *, temp_path: Callable[[], str] | None = None, durable: bool = False
    ) -> None:
        self.root = root
        self._temp_path = temp_path
        self._durable = durable
        self._medium: LocalMedium | None = None

    @property
    def medium(self) -> LocalMedium:
        """The medium of `root`, made on first use: a get reads by path and
        never needs it, so neither `import marimo_store` nor a hit pays for it."""
        if self._medium is None:
            from marimo_store._media.local import LocalMedium  # noqa: PLC0415

            self._medium = LocalMedium(self.root, temp_path=self._temp_path, durable=self._durable)
        return self._medium

    @staticmethod
    def key_of(object_id: str) -> str:
        """An object's key in the medium: two hex characters of fan-out, then the rest."""
        return f"{object_id[:_FAN_OUT]}/{object_id[_FAN_OUT:]}"

    def path_of(self, object_id: str) -> str:
        """The file name of an object (`key_of` beneath `root`)."""
        return os.path.join(self.root, object_id[:_FAN_OUT], object_id[_FAN_OUT:])

    def quarantine_name(self, path: str, at: int) -> str:
        """The name in `quarantine/` of the object file at `path` moved there at `at` (ms)."""
        return quarantine_name(path, at, objects=self.root)

    def stored(self) -> Iterator[tuple[str, str]]:
        """`(path, object id)` of every regular file with an object's name at
        its place, as the medium lists them (never through a symlinked
        directory, `objects/` itself included: `scan_real_directory` warns).
        Other files are not objects: not ours to delete."""
        if not scan_real_directory(self.root):
            return
        for info in self.medium.list(""):
            fan, _, rest = info.key.partition("/")
            object_id = fan + rest
            if (
                len(fan) == _FAN_OUT
                and len(object_id) in _ID_LENGTHS
                and set(object_id) <= HEX_DIGITS
            ):
                yield self.medium.local_path(info.key), object_id

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
