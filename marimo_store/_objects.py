"""The content-addressed object directory: `objects/ab/cdef…`.

An object's name is the hash of its bytes, so the same name always means
the same bytes: writing is "create if absent" (dedup for free), files never
change after creation, and a reader can check any file against its name.
That check is what turns every kind of damage (torn write, bit rot, a sync
tool's half-copied file) into a miss instead of a wrong value.
"""

from __future__ import annotations

import mmap
import os
import warnings

from marimo_store import _fs
from marimo_store._entry import now_ms
from marimo_store._errors import StoreWarning
from marimo_store._hashing import CONTENT_HASH_BYTES, content_digest
from marimo_store._signing import object_digest
from marimo_store._verified import VerifiedObjects, fingerprint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Literal, TypeAlias

    from marimo_store._hashing import Buffer

    MmapMode: TypeAlias = Literal["c", "r"]

EMPTY_OBJECT_ID = content_digest(b"").hex()
"""The empty object is implicit: never written, always present."""

_CONTENT_HEX = CONTENT_HASH_BYTES * 2
_PREALLOCATE_MIN_BYTES = 1024 * 1024


class ObjectDirectory:
    """Writes, reads and verifies the objects of one store.

    Verified files are remembered by fingerprint (see `_verified.py`), so a
    file that has not changed since it was written or last hashed on this
    machine is not hashed again: that is what lets `get` memory-map a 1 GiB
    array in well under a millisecond without giving up verification.
    """

    def __init__(
        self,
        root: str,
        *,
        quarantine_dir: str,
        temp_path: Callable[[], str],
        durable: bool,
        verify_reads: bool,
        verified: VerifiedObjects,
    ) -> None:
        self.root = root
        self._quarantine_dir = quarantine_dir
        self._temp_path = temp_path
        self._durable = durable
        self._verify_reads = verify_reads
        self._verified = verified

    def path_of(self, object_id: str) -> str:
        """The file name of an object: two hex characters of fan-out, then the rest."""
        return os.path.join(self.root, object_id[:2], object_id[2:])

    def write(self, data: Buffer, *, qualifier: str = "", digest: bytes | None = None) -> str:
        """Store `data` unless an object with its bytes exists; return its id.

        The hash is computed before any write, so a duplicate costs one hash,
        one `stat` and one `utime` (which tells object GC the object is in use
        again). A present file of the wrong size is damaged: it is replaced.
        `digest`, the SHA-256 of `data` when the writer signs, is remembered
        for a file this call creates (a present one is checked when read).
        """
        object_id = content_digest(data).hex() + qualifier
        size = memoryview(data).nbytes
        if size == 0:
            return object_id
        path = self.path_of(object_id)
        try:
            present = os.stat(path).st_size == size
        except (FileNotFoundError, NotADirectoryError):
            present = False
        if present:
            try:
                _fs.touch(path)
            except FileNotFoundError:  # deleted between the stat and the touch
                present = False
        if not present:
            self._create(object_id, path, data, digest)
        return object_id

    def _create(self, object_id: str, path: str, data: Buffer, digest: bytes | None) -> None:
        temp = self._temp_path()
        try:
            file = _fs.create_new(temp)
        except FileNotFoundError:  # tmp/ was removed (git clean -X, a user) while we ran
            _fs.makedirs(os.path.dirname(temp))
            file = _fs.create_new(temp)
        try:
            with file:
                size = memoryview(data).nbytes
                if size >= _PREALLOCATE_MIN_BYTES:
                    _fs.preallocate(file, size)
                _fs.write_all(file, data)
                if self._durable:
                    _fs.fsync(file)
            try:
                _fs.replace(temp, path)
            except FileNotFoundError:  # first object of its fan-out directory
                _fs.makedirs(os.path.dirname(path))
                _fs.replace(temp, path)
        except BaseException:
            _fs.unlink(temp)
            raise
        if self._durable:
            _fs.fsync_dir(os.path.dirname(path))
        # We hashed exactly these bytes; remember the file as verified.
        seen = fingerprint(os.stat(path))
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
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            stat = os.fstat(fd)
            if stat.st_size != size:
                self._quarantine(object_id, path, stat, f"size {stat.st_size}, expected {size}")
                return None
            data = self._load(fd, size, memory_map=memory_map)
        except (OSError, ValueError):
            return None  # changed or vanished while we opened it: a plain miss
        finally:
            os.close(fd)
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
    def _load(fd: int, size: int, *, memory_map: MmapMode | None) -> mmap.mmap | bytearray | None:
        """Map or read `size` bytes; None if the file shrank under us."""
        if memory_map is not None:
            access = mmap.ACCESS_COPY if memory_map == "c" else mmap.ACCESS_READ
            return mmap.mmap(fd, size, access=access)
        data = bytearray(size)
        view = memoryview(data)
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as file:
            done = 0
            while done < size:
                count = file.readinto(view[done:])
                if not count:
                    return None
                done += count
        return data

    def _quarantine(self, object_id: str, path: str, stat: os.stat_result, reason: str) -> None:
        warnings.warn(
            f"marimo_store: damaged object {path} ({reason}); treated as a miss "
            f"and moved to {self._quarantine_dir}",
            StoreWarning,
            stacklevel=4,
        )
        self._verified.forget(object_id)
        try:
            current = os.stat(path)
            if (current.st_dev, current.st_ino) != (stat.st_dev, stat.st_ino):
                return  # replaced meanwhile (e.g. re-put by another process): not ours to move
            _fs.makedirs(self._quarantine_dir)
            name = f"{os.path.basename(os.path.dirname(path))}{os.path.basename(path)}"
            _fs.replace(path, os.path.join(self._quarantine_dir, f"{name}.{now_ms()}"))
        except OSError:
            pass  # another process moved or deleted it first; the miss stands
