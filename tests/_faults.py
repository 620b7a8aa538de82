"""File-operation instrumentation for the crash and fault-injection tests.

`marimo_store._fs` is the one module through which the store changes files.
`instrumented(ops)` replaces its functions with the methods of a `FileOps`,
which perform the real operation and, as planned:

- count and record every operation (`ops.log`);
- **crash** before the k-th operation: raise `SimulatedCrash` (a
  BaseException, so no `except Exception` in the store swallows it) and make
  every later operation raise it too, so that no clean-up code of the "dead
  process" touches a file; `torn=True` first writes half of the bytes of a
  write (a write cut short by the crash);
- **inject** an `OSError` (`EIO`, `ENOSPC`, `EACCES`, ...) at the k-th
  operation, once or on every operation from then on (`persistent`);
- **replace** the file the k-th operation is about with one of the same
  size and other bytes (`replace_at`), as a sync tool delivering a newer
  copy does in the middle of a read;
- keep a **journal** of what the durable state would be, so that a power
  cut can be applied afterwards (`power_cut`): data written but never
  fsynced is dropped (truncated or zero-filled, as file systems show after a
  crash), and creations, renames and deletions whose directory was never
  fsynced afterwards are undone (in reverse order). This is the pessimistic
  model of ALICE/LazyFS: anything the code did not make durable is lost.

Production code pays nothing for this: `_fs` stays a plain module of plain
functions; only the tests swap them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from io import FileIO
from typing import Any, BinaryIO

from marimo_store import _fs

OPERATIONS = (
    "makedirs",
    "create_new",
    "open_lock_file",
    "append_to",
    "write_all",
    "preallocate",
    "fsync",
    "fsync_dir",
    "replace",
    "link",
    "unlink",
    "touch",
)
"""Every function of `_fs` that changes the file system (`write_new_file`
is made of these and is not replaced)."""

READ_OPERATIONS = (
    "stat",
    "lstat",
    "open_read",
    "fstat",
    "read",
    "read_into",
    "map_read",
    "scandir",
)
"""Every function of `_fs` that reads: instrumented only when a test asks
(`instrumented(ops, READ_OPERATIONS)`), so the write-side enumerations
count what they always counted."""


class SimulatedCrash(BaseException):
    """The simulated process died: the test abandons the store instance."""


class _File:
    """What the journal knows of one file written during the instrumented call."""

    __slots__ = ("path", "synced", "written")

    def __init__(self, path: str, written: int) -> None:
        self.path = path
        self.written = written
        self.synced = written


class _DirectoryChange:
    """A creation, rename or deletion; undone by a power cut unless durable."""

    __slots__ = ("directory", "durable", "kind", "saved", "source", "target")

    def __init__(
        self, kind: str, directory: str, target: str, source: str = "", saved: str = ""
    ) -> None:
        self.kind = kind
        self.directory = directory
        self.target = target
        self.source = source
        self.saved = saved  # a hard link keeping the replaced or deleted file
        self.durable = False


class FileOps:
    """The replacement of `_fs`'s functions, with a crash/fault plan and a journal.

    `shadow_dir` (same file system as the store) keeps hard links of deleted
    or overwritten files, so that a power cut can bring them back.
    """

    def __init__(
        self,
        *,
        shadow_dir: str,
        crash_at: int | None = None,
        torn: bool = False,
        fault_at: int | None = None,
        fault_errno: int = 0,
        persistent: bool = False,
        replace_at: int | None = None,
    ) -> None:
        self.shadow_dir = shadow_dir
        self.replace_at = replace_at
        self.crash_at = crash_at
        self.torn = torn
        self.fault_at = fault_at
        self.fault_errno = fault_errno
        self.persistent = persistent
        self.count = 0
        self.log: list[tuple[str, str]] = []
        self.dead = False
        self.faults_raised = 0
        self._real: dict[str, Callable[..., Any]] = {}
        self._files: dict[str, _File] = {}
        self._handles: dict[int, _File] = {}
        self._changes: list[_DirectoryChange] = []
        self._shadow_names = itertools.count()

    # -- the plan ----------------------------------------------------------------------

    def _before(self, name: str, path: str) -> bool:
        """Count the operation; crash or raise as planned. True: crash inside it."""
        if self.dead:
            raise SimulatedCrash(f"{name} {path}: the process is dead")
        self.count += 1
        self.log.append((name, path))
        if self.crash_at == self.count:
            self.dead = True
            if self.torn and name == "write_all":
                return True
            raise SimulatedCrash(f"crash before operation {self.count}: {name} {path}")
        if self.fault_at is not None and (
            self.count == self.fault_at or (self.persistent and self.count > self.fault_at)
        ):
            self.faults_raised += 1
            raise OSError(self.fault_errno, os.strerror(self.fault_errno), path)
        if self.replace_at == self.count and os.path.isfile(path):
            self.faults_raised += 1
            _replace_with_other_bytes(path)
        return False

    # -- the replaced functions --------------------------------------------------------

    def makedirs(self, path: str) -> None:
        self._before("makedirs", path)
        self._real["makedirs"](path)

    def create_new(self, path: str, *, append: bool = False) -> BinaryIO:
        self._before("create_new", path)
        file: BinaryIO = self._real["create_new"](path, append=append)
        record = _File(path, 0)
        self._files[path] = record
        self._handles[id(file)] = record
        self._changes.append(_DirectoryChange("create", os.path.dirname(path), path))
        return file

    def open_lock_file(self, path: str) -> int:
        self._before("open_lock_file", path)
        fd: int = self._real["open_lock_file"](path)
        return fd

    def append_to(self, path: str, data: bytes) -> None:
        """One operation (the real function's inner write is not counted again)."""
        self._before("append_to", path)
        record = self._files.get(path)
        if record is None:  # a shared file: what it held before is durable
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                size = 0
                self._changes.append(_DirectoryChange("create", os.path.dirname(path), path))
            record = self._files[path] = _File(path, size)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        record.written += len(data)

    def preallocate(self, file: BinaryIO, size: int) -> None:
        record = self._record_of(file)
        self._before("preallocate", record.path)
        self._real["preallocate"](file, size)

    def write_all(self, file: BinaryIO, data: Any) -> None:
        record = self._record_of(file)
        view = memoryview(data).cast("B")
        if self._before("write_all", record.path):  # torn: half of it, then death
            self._real["write_all"](file, view[: len(view) // 2])
            record.written += len(view) // 2
            raise SimulatedCrash(f"crash inside operation {self.count}: write {record.path}")
        self._real["write_all"](file, view)
        record.written += len(view)

    def fsync(self, file: BinaryIO) -> None:
        record = self._record_of(file)
        self._before("fsync", record.path)
        self._real["fsync"](file)
        record.synced = record.written

    def fsync_dir(self, path: str) -> None:
        self._before("fsync_dir", path)
        self._real["fsync_dir"](path)
        for change in self._changes:
            if change.directory == path:
                change.durable = True

    def replace(self, source: str, destination: str) -> None:
        self._before("replace", f"{source} -> {destination}")
        saved = self._save(destination)
        self._real["replace"](source, destination)
        record = self._files.pop(source, None)
        if record is not None:
            record.path = destination
            self._files[destination] = record
        self._changes.append(
            _DirectoryChange(
                "rename", os.path.dirname(destination), destination, source=source, saved=saved
            )
        )

    def link(self, source: str, destination: str) -> None:
        """A second name for a file: its unsynced bytes follow the new name
        (the temp name is unlinked next), and the name is a creation."""
        self._before("link", f"{source} -> {destination}")
        self._real["link"](source, destination)
        record = self._files.pop(source, None)
        if record is not None:
            record.path = destination
            self._files[destination] = record
        self._changes.append(_DirectoryChange("create", os.path.dirname(destination), destination))

    def unlink(self, path: str) -> None:
        self._before("unlink", path)
        saved = self._save(path)
        self._real["unlink"](path)
        self._files.pop(path, None)
        self._changes.append(_DirectoryChange("unlink", os.path.dirname(path), path, saved=saved))

    def touch(self, path: str) -> None:
        self._before("touch", path)
        self._real["touch"](path)

    # -- the replaced read functions (READ_OPERATIONS) ------------------------------------

    def stat(self, path: str) -> os.stat_result:
        self._before("stat", path)
        result: os.stat_result = self._real["stat"](path)
        return result

    def lstat(self, path: str) -> os.stat_result:
        self._before("lstat", path)
        result: os.stat_result = self._real["lstat"](path)
        return result

    def open_read(self, path: str) -> FileIO:
        self._before("open_read", path)
        file: FileIO = self._real["open_read"](path)
        return file

    def fstat(self, file: FileIO) -> os.stat_result:
        self._before("fstat", str(file.name))
        result: os.stat_result = self._real["fstat"](file)
        return result

    def read(self, file: FileIO, count: int = -1) -> bytes:
        self._before("read", str(file.name))
        data: bytes = self._real["read"](file, count)
        return data

    def read_into(self, file: FileIO, view: memoryview) -> int:
        self._before("read_into", str(file.name))
        count: int = self._real["read_into"](file, view)
        return count

    def map_read(self, file: FileIO, size: int, *, copy: bool = False) -> Any:
        self._before("map_read", str(file.name))
        return self._real["map_read"](file, size, copy=copy)

    def scandir(self, path: str) -> list[os.DirEntry[str]]:
        self._before("scandir", path)
        listing: list[os.DirEntry[str]] = self._real["scandir"](path)
        return listing

    # -- the journal -------------------------------------------------------------------

    def _record_of(self, file: BinaryIO) -> _File:
        record = self._handles.get(id(file))
        if record is None:  # a file created before the instrumentation: its bytes are durable
            size = os.fstat(file.fileno()).st_size
            record = _File(f"<fd {file.fileno()}>", size)
            self._handles[id(file)] = record
        return record

    def _save(self, path: str) -> str:
        """A hard link to what `path` holds now (empty if nothing)."""
        saved = os.path.join(self.shadow_dir, str(next(self._shadow_names)))
        try:
            os.link(path, saved)
        except FileNotFoundError:
            return ""
        return saved

    def power_cut(self, *, zeros: bool = False, keep: Callable[[str], bool] | None = None) -> None:
        """Lose what was never made durable: unsynced bytes, unsynced directory changes.

        `zeros`: unsynced bytes read back as zeros (the size survives) rather
        than being cut off. `keep(path)`: files (and directory changes) for
        which nothing is lost, e.g. the log, to model one file's data
        reaching the disk and another's not.
        """
        spared = keep or (lambda path: False)
        for record in self._files.values():
            if spared(record.path) or record.written <= record.synced:
                continue
            with contextlib.suppress(FileNotFoundError), open(record.path, "r+b") as file:
                if zeros:
                    file.seek(record.synced)
                    file.write(bytes(record.written - record.synced))
                else:
                    file.truncate(record.synced)
        for change in reversed(self._changes):
            if change.durable or spared(change.target):
                continue
            if change.kind == "create":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(change.target)
            elif change.kind == "rename":
                if os.path.exists(change.target):
                    os.makedirs(os.path.dirname(change.source), exist_ok=True)
                    os.replace(change.target, change.source)
                if change.saved:
                    os.link(change.saved, change.target)
            elif change.saved and not os.path.exists(change.target):  # an unlink
                os.link(change.saved, change.target)


def _replace_with_other_bytes(path: str) -> None:
    """Another file of the same size takes `path`'s name (what a sync tool
    delivering a newer version does while a reader has the old one open)."""
    with open(path, "rb") as file:
        data = bytearray(file.read())
    if data:
        data[len(data) // 2] ^= 0xFF
    temp = f"{path}.replacing"
    with open(temp, "wb") as file:
        file.write(data)
    os.replace(temp, path)


@contextlib.contextmanager
def instrumented(ops: FileOps, operations: tuple[str, ...] = OPERATIONS) -> Iterator[FileOps]:
    """Route the `_fs` `operations` (every write, by default) through `ops`
    for the duration of the block."""
    originals = {name: getattr(_fs, name) for name in operations}
    ops._real = originals
    for name in operations:
        setattr(_fs, name, getattr(ops, name))
    try:
        yield ops
    finally:
        for name, function in originals.items():
            setattr(_fs, name, function)
