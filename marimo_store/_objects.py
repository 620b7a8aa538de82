"""The content-addressed object directory: `objects/ab/cdef…`.

An object's name is the hash of its bytes, so the same name always means
the same bytes: writing is "create if absent" (dedup for free), files never
change after creation, and a reader can check any file against its name.
That check is what turns every kind of damage (torn write, bit rot, a sync
tool's half-copied file) into a miss instead of a wrong value.

Implements W1, W2, W3, M8, R1 (docs/format.md §14).
"""

from __future__ import annotations

import mmap
import os
import stat as stat_module
import time
import warnings

from marimo_store import _fs
from marimo_store._entry import now_ms
from marimo_store._errors import StoreWarning, warn_unreadable
from marimo_store._format.objects import ObjectNames
from marimo_store._hashed_objects import VerifiedObjects, fingerprint
from marimo_store._hashing import CONTENT_HASH_BYTES, content_digest
from marimo_store._retired import is_retired
from marimo_store._signing import object_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from io import FileIO
    from typing import Literal, TypeAlias

    from marimo_store._hashing import Buffer

    MmapMode: TypeAlias = Literal["c", "r"]

EMPTY_OBJECT_ID = content_digest(b"").hex()
"""The empty object is implicit: never written, always present."""

_CONTENT_HEX = CONTENT_HASH_BYTES * 2


class ObjectDirectory(ObjectNames):
    """Writes, reads and verifies the objects of one store (named by
    `ObjectNames`: docs/format.md §3.3, §3.6).

    Verified files are remembered by fingerprint (see `_hashed_objects.py`), so a
    file that has not changed since it was written or last hashed on this
    machine is not hashed again: that is what lets `get` memory-map a 1 GiB
    array in well under a millisecond without giving up verification.
    """

    def __init__(
        self,
        root: str,
        *,
        quarantine_dir: str,
        quarantine_after_seconds: float,
        temp_path: Callable[[], str],
        durable: bool,
        verify_reads: bool,
        verified: VerifiedObjects,
    ) -> None:
        super().__init__(root, temp_path=temp_path, durable=durable)
        self._quarantine_dir = quarantine_dir
        self._quarantine_after_seconds = quarantine_after_seconds
        self._verify_reads = verify_reads
        self._verified = verified

    def write(self, data: Buffer, *, qualifier: str = "", digest: bytes | None = None) -> str:
        """Store `data` unless an object with its bytes exists; return its id.

        The hash is computed before any write, so a duplicate costs one hash,
        one `stat` and one `utime` (which tells object GC the object is in use
        again). A present file of the wrong size, anything but a regular file
        (a symlink, a FIFO), or one that failed verification here, is
        damaged: it is replaced.
        `digest`, the SHA-256 of `data` when the writer signs, is remembered
        for a file this call creates (a present one is checked when read).
        """
        object_id = content_digest(data).hex() + qualifier
        size = memoryview(data).nbytes
        if size == 0:
            return object_id
        key = self.key_of(object_id)
        found = self.medium.local_stat(key)  # a symlink is never an object: it is replaced
        present = (
            found is not None
            and stat_module.S_ISREG(found.st_mode)
            and found.st_size == size
            and not self._verified.is_damaged(object_id, fingerprint(found))
        )
        if present and not self.medium.touch(key):  # deleted between the stat and the touch
            found = None
            present = False
        if not present:
            self._create(object_id, key, data, digest, damaged=found is not None)
        return object_id

    def _create(
        self, object_id: str, key: str, data: Buffer, digest: bytes | None, *, damaged: bool
    ) -> None:
        """Write the object (W1, W3): a new file with `put_once`, or over a
        damaged one with `replace`. A concurrent writer that put it first
        wrote the same bytes: its file is as good as ours."""
        if damaged:
            self.medium.replace(key, data)
        elif not self.medium.put_once(key, (data,)):
            return
        # We hashed exactly these bytes; remember the file as verified.
        written = self.medium.local_stat(key)
        if written is None:
            return  # deleted meanwhile (a cleanup of a store it thought unused)
        seen = fingerprint(written)
        self._verified.add(object_id, seen)
        if digest is not None:
            self._verified.add_digest(object_id, seen, digest)

    def read(
        self,
        object_id: str,
        size: int,
        *,
        memory_map: MmapMode | None,
        digest: bytes | None = None,
    ) -> memoryview | None:
        """The bytes of an object, or None when it is missing or damaged.

        `memory_map` maps the file instead of reading it: `"c"` copy-on-write
        (a writable view whose writes stay private to this process: the file
        never changes), `"r"` read-only (numpy arrays built on it are
        read-only). None: a private, writable copy in memory.
        Damage (wrong size or hash) moves the file to quarantine and warns.
        With `digest` (a signed entry's SHA-256 of the object), the bytes must
        also match it: checked once per unchanged file per process, whatever
        `verify_reads` says.
        """
        if size == 0:
            return memoryview(b"")
        path = self.path_of(object_id)
        file = self._open(object_id, path)
        if file is None:
            return None
        try:
            stat = _fs.fstat(file)
            if stat.st_size != size:
                self._wrong_size(object_id, path, stat, size)
                return None
            data = self._load(file, size, memory_map=memory_map)
        except ValueError:
            return None  # emptied while we opened it: a plain miss
        except OSError as error:
            warn_unreadable(path, error)
            return None
        finally:
            file.close()
        if data is None:
            return None
        seen = fingerprint(stat)
        if self._verify_reads and not self._verified.is_verified(object_id, seen):
            if content_digest(data).hex() != object_id[:_CONTENT_HEX]:
                self._quarantine(object_id, path, stat, "contents do not match the object's hash")
                return None
            self._verified.add(object_id, seen)
        if digest is not None and not self._verified.has_digest(object_id, seen, digest):
            if object_digest(data) != digest:
                self._quarantine(object_id, path, stat, "contents do not match the signed digest")
                return None
            self._verified.add_digest(object_id, seen, digest)
        return memoryview(data)

    @staticmethod
    def _load(
        file: FileIO, size: int, *, memory_map: MmapMode | None
    ) -> mmap.mmap | memoryview | None:
        """Map or read `size` bytes; None if the file shrank under us."""
        if memory_map is not None:
            return _fs.map_read(file, size, copy=memory_map == "c")
        data = view = _fs.fresh_buffer(size)
        done = 0
        while done < size:
            count = _fs.read_into(file, view[done:])
            if not count:
                return None
            done += count
        return data

    def _open(self, object_id: str, path: str) -> FileIO | None:
        """The object's file opened for reading; None (a miss) when it is
        absent, cannot be read right now (a warning), or is not a regular
        file (damage: see `_not_a_file`)."""
        try:
            return _fs.open_read(path)
        except (FileNotFoundError, NotADirectoryError):
            return None  # not here (yet): a plain miss
        except OSError as error:
            if not self._not_a_file(object_id, path):
                warn_unreadable(path, error)
            return None

    def _not_a_file(self, object_id: str, path: str) -> bool:
        """Whether a symlink, FIFO, device or directory is where an object
        belongs: damage, moved to quarantine (a symlink itself, never its
        target). False for a regular file that could not be opened."""
        try:
            found = os.lstat(path)
        except OSError:
            return False  # gone meanwhile, or unreadable: a plain miss
        if stat_module.S_ISREG(found.st_mode):
            return False
        self._quarantine(object_id, path, found, "not a regular file")
        return True

    def _wrong_size(self, object_id: str, path: str, stat: os.stat_result, size: int) -> None:
        """A file of another size than the object's: damage, unless a cleanup
        retired it (a store in git, see `_retired.py`): then it is absent."""
        if not is_retired(path, stat.st_size):
            self._quarantine(object_id, path, stat, f"size {stat.st_size}, expected {size}")

    def _quarantine(self, object_id: str, path: str, stat: os.stat_result, reason: str) -> None:
        """Warn about a damaged object; move it to quarantine once it is old.

        A young file (its mtime or ctime within `quarantine_after_seconds`)
        may be a sync tool's copy still arriving (a prefix, a placeholder of
        zeros): it stays where the rest will land, and moving it away would
        make the tool delete the object on every machine. A put of the same
        bytes replaces it (`VerifiedObjects.is_damaged`).
        """
        young = time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) < int(
            self._quarantine_after_seconds * 1e9
        )
        where = "left in place: it may still be arriving" if young else "moved to quarantine"
        warnings.warn(
            f"marimo_store: damaged object {path} ({reason}); treated as a miss and {where}",
            StoreWarning,
            stacklevel=4,
        )
        self._verified.forget(object_id, fingerprint(stat))
        if young:
            return
        try:
            current = os.lstat(path)
            if (current.st_dev, current.st_ino) != (stat.st_dev, stat.st_ino):
                return  # replaced meanwhile (e.g. re-put by another process): not ours to move
            _fs.makedirs(self._quarantine_dir)
            name = self.quarantine_name(path, now_ms())
            _fs.replace(path, os.path.join(self._quarantine_dir, name))
        except OSError:
            pass  # another process moved or deleted it first; the miss stands
