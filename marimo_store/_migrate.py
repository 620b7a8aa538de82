"""`migrate_marimo_cache`: import marimo's own cache directory into a store.

marimo's `FileStore` keeps one file per key under `__marimo__/cache`. The
import reads those files and stores each marimo entry the way `MarimoStore`
would have (see `_marimo_keys.py`), so that marimo, configured with the
`fs_persistent` store, finds every entry it found before. It never needs
marimo itself and never unpickles anything: the files are copied as bytes.
"""

from __future__ import annotations

import os
from collections import defaultdict

from marimo_store._entry import ExecutionKey
from marimo_store._errors import ExecutionKeyClash, InvalidKeyError
from marimo_store._hashing import HEX_DIGITS
from marimo_store._marimo_keys import (
    BLOB,
    DEFAULT_STORE_PATH,
    MARIMO_CACHE_PATH,
    MarimoKey,
    marimo_entry,
    parse_marimo_key,
)
from marimo_store._value import Value
from marimo_store.store import FsPersistentStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_PARTIAL_WRITE_INFIX = ".tmp"
"""marimo writes `<name>.tmp<8 hex>` and renames it; a leftover is no entry."""


class MigrationReport(Value):
    """What `migrate_marimo_cache` imported.

    `entries`: marimo entries stored (a lazy manifest with its blobs counts
    once); `files`: the files they came from; `bytes_before`: those files'
    total size; `bytes_after`: the distinct bytes the imported entries take
    in the store (data shared by several entries, or already stored, counted
    once); `skipped`: `(path, reason)` of every file not imported.
    """

    __slots__ = ("entries", "files", "bytes_before", "bytes_after", "skipped")
    entries: int
    files: int
    bytes_before: int
    bytes_after: int
    skipped: tuple[tuple[str, str], ...]

    def __init__(
        self,
        entries: int,
        files: int,
        bytes_before: int,
        bytes_after: int,
        skipped: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._assign(
            entries=entries,
            files=files,
            bytes_before=bytes_before,
            bytes_after=bytes_after,
            skipped=skipped,
        )

    @property
    def dedup_ratio(self) -> float:
        """`bytes_before / bytes_after` (1.0 when nothing was imported)."""
        return self.bytes_before / self.bytes_after if self.bytes_after else 1.0


def migrate_marimo_cache(
    src: str | os.PathLike[str] = MARIMO_CACHE_PATH,
    dst: str | os.PathLike[str] | FsPersistentStore = DEFAULT_STORE_PATH,
    *,
    progress: Callable[[int, int], object] | None = None,
    **options: Any,
) -> MigrationReport:
    """Import marimo's cache directory `src` into the store `dst`.

    `dst` is a store or a store path (then `options` are the
    `FsPersistentStore` arguments). Each entry keeps its file's modification
    time as its `created_at`, so cleanup keeps the newest entries of a
    block. Running it again stores nothing twice (the same file is the same
    entry). `src` is left as it was: delete it once marimo works from the
    store.

    Files that marimo would not read are skipped and listed in the report:
    interrupted writes, keys that are not safe relative paths, and the
    blobs of a lazy entry whose manifest is missing.

    The store's cleanup strategy applies to what is imported (old entries
    trigger a cleanup soon): with the default, the newest 3 entries of
    each block stay. Pass a `cleanup_strategy` that keeps more, such as
    `DefaultCleanupStrategy(max_entries_per_block=None)`, to keep them all.

    `progress(files_done, files_total)` is called as the files are imported (the
    command `marimo-store migrate` draws a progress bar with it).
    """
    if not os.path.isdir(src):
        raise FileNotFoundError(f"marimo cache directory {os.fspath(src)!r} does not exist")
    owned = not isinstance(dst, FsPersistentStore)
    store = dst if isinstance(dst, FsPersistentStore) else FsPersistentStore(dst, **options)
    groups, skipped = _group_files(os.fspath(src))
    entries = files = bytes_before = done = 0
    total = sum(len(members) for members in groups.values())
    imported: dict[str, int] = {}
    for key, members in sorted(groups.items(), key=lambda item: repr(item[0])):
        if progress is not None:
            progress(done, total)
        done += len(members)
        if not any(parsed.role != BLOB for parsed, _ in members):
            skipped += [(path, "blob of a lazy entry without its manifest") for _, path in members]
            continue
        contents = {parsed.key: _read(path) for parsed, path in members}
        newest = max(os.stat(path).st_mtime_ns for _, path in members) // 1_000_000
        try:
            metadata = store.put(marimo_entry(key.at(newest), contents))
        except ExecutionKeyClash:
            skipped += [(path, "another entry was imported with its time") for _, path in members]
            continue
        entries += 1
        files += len(members)
        bytes_before += sum(len(data) for data in contents.values())
        imported.update((ref.id, ref.size) for ref in metadata.objects().values())
    if progress is not None:
        progress(done, total)
    if owned:
        store.close()
    return MigrationReport(entries, files, bytes_before, sum(imported.values()), tuple(skipped))


def _group_files(
    src: str,
) -> tuple[dict[ExecutionKey, list[tuple[MarimoKey, str]]], list[tuple[str, str]]]:
    """The files under `src` by the store entry their key belongs to."""
    groups: dict[ExecutionKey, list[tuple[MarimoKey, str]]] = defaultdict(list)
    skipped: list[tuple[str, str]] = []
    for directory, subdirectories, names in os.walk(src):
        subdirectories.sort()
        for name in sorted(names):
            path = os.path.join(directory, name)
            if _is_partial_write(name):
                skipped.append((path, "interrupted write"))
                continue
            relative = os.path.relpath(path, src).replace(os.sep, "/")
            try:
                parsed = parse_marimo_key(relative)
            except InvalidKeyError as error:
                skipped.append((path, str(error)))
                continue
            groups[parsed.execution_key].append((parsed, path))
    return groups, skipped


def _is_partial_write(name: str) -> bool:
    if name.endswith(_PARTIAL_WRITE_INFIX):
        return True
    head, _, tag = name.rpartition(_PARTIAL_WRITE_INFIX)
    return bool(head) and len(tag) == 8 and set(tag) <= HEX_DIGITS


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()
