"""The one seam through which the store touches files.

Every write-side file operation (create, write, fsync, replace, unlink,
mkdir, utime, creating a lock file) goes through a function here and nowhere
else, so that crash and fault-injection tests (tests/_faults.py) can replace
these functions to stop the "process" after the k-th operation, inject
`EIO`/`ENOSPC`/`EACCES`, or drop data that was never fsynced. The reads that
`get`, `load`, cached calls and iteration make (stat, open, read, mmap,
listing a directory) go through here too, so that the same tests can make
any of them fail and check that a failed read is a miss with a warning,
never a raw `OSError`.
Callers look the functions up on the module at call time
(`_fs.replace(...)`), which is what makes them replaceable; the cost is one
attribute lookup.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from io import FileIO

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

    from marimo_store._hashing import Buffer

_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def makedirs(path: str) -> None:
    """Create a directory and its parents; an existing one is fine."""
    os.makedirs(path, exist_ok=True)


def create_new(path: str, *, append: bool = False, mode: int = 0o644) -> BinaryIO:
    """Open a file that must not exist yet, unbuffered.

    Exclusive creation is what guarantees "one writer per file": a name
    collision fails loudly instead of two writers interleaving. `mode` is
    the permission of the new file (a private key gets 0o600).
    """
    flags = _NEW_FILE_FLAGS | (os.O_APPEND if append else 0)
    fd = os.open(path, flags, mode)
    return os.fdopen(fd, "ab" if append else "wb", buffering=0)


def open_lock_file(path: str) -> int:
    """Open (creating it if needed) a lock file; the caller closes the descriptor."""
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


def append_to(path: str, data: bytes) -> None:
    """Append `data` to a file shared by processes, creating it if needed.

    One `write` on an `O_APPEND` descriptor: on a local file system the
    bytes land together at the end, whoever else appends.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o644)
    try:
        with os.fdopen(fd, "ab", buffering=0, closefd=False) as file:
            write_all(file, data)
    finally:
        os.close(fd)


def write_all(file: BinaryIO, data: Buffer) -> None:
    """Write every byte of `data` (raw files may accept only a part per call)."""
    view = memoryview(data).cast("B")
    while view:
        written = file.write(view)
        if written is None:  # pragma: no cover - only non-blocking files return None
            raise BlockingIOError("write would block")
        view = view[written:]


def preallocate(file: BinaryIO, size: int) -> None:
    """Reserve `size` bytes for a file about to be written whole.

    Writing into reserved space is about 30% faster here than growing the
    file write by write (numpy's `np.save` does the same). File systems
    that cannot reserve space just skip it; running out of space is raised
    now, before anything is written.
    """
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - macOS, Windows
        return
    try:
        os.posix_fallocate(file.fileno(), 0, size)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise


def fsync(file: BinaryIO) -> None:
    """Ask the OS to put the file's data on stable storage."""
    os.fsync(file.fileno())


def fsync_dir(path: str) -> None:
    """Make a rename or creation inside `path` durable (POSIX only)."""
    if os.name != "posix":  # pragma: no cover - Windows has no directory handles
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace(source: str, destination: str) -> None:
    """Atomically move `source` over `destination`."""
    os.replace(source, destination)


def unlink(path: str) -> None:
    """Delete a file; one that is already gone is fine (another process won)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def touch(path: str) -> None:
    """Set a file's mtime to now (marks a deduplicated object as recently used)."""
    os.utime(path)


def write_new_file(path: str, data: bytes, *, temp_path: str, durable: bool) -> None:
    """Write a whole file under a temporary name, then move it into place.

    Readers therefore see either no file or the complete file, never a
    prefix. With `durable`, data and rename are fsynced before returning.
    """
    file = create_new(temp_path)
    try:
        with file:
            write_all(file, data)
            if durable:
                fsync(file)
        replace(temp_path, path)
    except BaseException:
        unlink(temp_path)
        raise
    if durable:
        fsync_dir(os.path.dirname(path))


# -- reads ---------------------------------------------------------------------------


def stat(path: str) -> os.stat_result:
    """`os.stat` of a path (following symlinks)."""
    return os.stat(path)


def open_read(path: str) -> FileIO:
    """Open a file for reading, unbuffered (a directory raises IsADirectoryError)."""
    return open(path, "rb", buffering=0)


def fstat(file: FileIO) -> os.stat_result:
    """`os.fstat` of an open file."""
    return os.fstat(file.fileno())


def read(file: FileIO) -> bytes:
    """Everything from the file's position to its end."""
    return file.read()


def read_into(file: FileIO, view: memoryview) -> int:
    """Read into `view`; the number of bytes read (0 at the end of the file)."""
    return file.readinto(view) or 0


def map_read(file: FileIO, size: int) -> mmap.mmap:
    """Map `size` bytes of a file read-only (0: the whole file)."""
    return mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ)


def scandir(path: str) -> list[os.DirEntry[str]]:
    """The entries of a directory, listed at once."""
    with os.scandir(path) as entries:
        return list(entries)
