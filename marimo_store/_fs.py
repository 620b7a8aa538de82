"""The one seam through which the store touches files.

Every write-side file operation (create, write, fsync, replace, link,
unlink, mkdir, utime, creating a lock file) goes through a function here and nowhere
else, so that crash and fault-injection tests (tests/_faults.py) can replace
these functions to stop the "process" after the k-th operation, inject
`EIO`/`ENOSPC`/`EACCES`, or drop data that was never fsynced. The reads that
`get`, `load`, cached calls and iteration make (stat, open, read, mmap,
listing a directory) go through here too, so that the same tests can make
any of them fail and check that a failed read is a miss with a warning,
never a raw `OSError`.
Callers look the functions up on the module at call time
(`_fs.replace(...)`), which is what makes them replaceable; the cost is one
attribute lookup. Beneath a store root (`confine`), no write follows a
symlink: a hostile folder cannot redirect one outside the store. Reads open
only regular files, never following a final symlink and never blocking
(`open_read`): a FIFO or a link where a file belongs cannot hang a reader.

Implements W3 (docs/format.md §14).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat as stat_module
import sys
from io import FileIO

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

    from marimo_store._hashing import Buffer

_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
"""Refuses a symlink as the last component of a path (0 where unknown: Windows)."""
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


# -- confinement: no write beneath a store root follows a symlink ---------------------

_CONFINED_ROOTS: set[str] = set()
_DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
_HAS_DIR_FD = {os.open, os.mkdir, os.unlink, os.rename, os.utime} <= os.supports_dir_fd


def confine(root: str) -> None:
    """Make every write beneath `root` (an absolute store directory) stay in it.

    From then on, the functions of this module reach a path beneath `root`
    only through real directories: each directory between `root` and the
    file is opened relative to its parent with `O_NOFOLLOW`, and the
    operation runs relative to the last one (`dir_fd`), so a symlink planted
    anywhere in the store (`objects/ab/`, `log/`, `tmp/`, `locks/`, `local/`
    ...) fails the write with `OSError` instead of redirecting it outside the
    store, with no window between a check and the write. Files themselves
    are never followed either (`O_NOFOLLOW`, `O_EXCL`, rename and unlink act
    on the link). `root` itself may be a symlink: that is the user's choice.
    A directory beneath a confined root (a medium's, `objects/`) adds
    nothing: the outer root already covers it, and confining it too would
    let a symlink planted in its own place go unnoticed.
    """
    root = os.path.normpath(root)
    if _confining_root(root) is None:
        _CONFINED_ROOTS.add(root)


def _confining_root(path: str) -> str | None:
    """The innermost confined root strictly above `path`, if any."""
    directory = os.path.dirname(path)
    while True:
        if directory in _CONFINED_ROOTS:
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def _open_child_directory(name: str, parent_fd: int, path: str) -> int:
    """`name` in `parent_fd` as a directory descriptor, refusing a symlink."""
    try:
        return os.open(name, _DIRECTORY_FLAGS | _NO_FOLLOW, dir_fd=parent_fd)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise OSError(
                error.errno,
                f"{name} is a symlink or not a directory; the store never writes through one",
                path,
            ) from None
        raise


@contextlib.contextmanager
def _parent_of(path: str) -> Iterator[tuple[int | None, str]]:
    """`(directory descriptor, name)` to operate on `path` without following a
    symlink beneath its confined root; `(None, path)` outside every root."""
    root = _confining_root(path)
    if root is None:
        yield None, path
        return
    if not _HAS_DIR_FD:  # pragma: no cover - Windows: check each directory instead
        _refuse_linked_directories(root, path)
        yield None, path
        return
    relative = os.path.relpath(os.path.dirname(path), root)
    fd = os.open(root, _DIRECTORY_FLAGS)
    try:
        for name in [] if relative == os.curdir else relative.split(os.sep):
            child = _open_child_directory(name, fd, path)
            os.close(fd)
            fd = child
        yield fd, os.path.basename(path)
    finally:
        os.close(fd)


def _refuse_linked_directories(root: str, path: str) -> None:  # pragma: no cover - Windows
    directory = os.path.dirname(path)
    while directory != root:
        if os.path.islink(directory):
            raise OSError(errno.ELOOP, "a symlink; the store never writes through one", path)
        directory = os.path.dirname(directory)


# -- the write operations -----------------------------------------------------------------


def makedirs(path: str) -> None:
    """Create a directory and its parents; an existing one is fine.

    Beneath a confined root, each level is created and entered without
    following a symlink (see `confine`).
    """
    root = _confining_root(path)
    if root is None or not _HAS_DIR_FD:
        if root is not None:  # pragma: no cover - Windows
            _refuse_linked_directories(root, os.path.join(path, "."))
        os.makedirs(path, exist_ok=True)
        return
    os.makedirs(root, exist_ok=True)
    fd = os.open(root, _DIRECTORY_FLAGS)
    try:
        for name in os.path.relpath(path, root).split(os.sep):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=fd)
            child = _open_child_directory(name, fd, path)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def create_new(path: str, *, append: bool = False, mode: int = 0o644) -> BinaryIO:
    """Open a file that must not exist yet, unbuffered.

    Exclusive creation is what guarantees "one writer per file": a name
    collision fails loudly instead of two writers interleaving. `mode` is
    the permission of the new file (a private key gets 0o600).
    """
    flags = _NEW_FILE_FLAGS | _NO_FOLLOW | (os.O_APPEND if append else 0)
    with _parent_of(path) as (directory, name):
        fd = os.open(name, flags, mode, dir_fd=directory)
    return os.fdopen(fd, "ab" if append else "wb", buffering=0)


def open_lock_file(path: str) -> int:
    """Open (creating it if needed) a lock file; the caller closes the descriptor."""
    with _parent_of(path) as (directory, name):
        return os.open(name, os.O_RDWR | os.O_CREAT | _NO_FOLLOW, 0o644, dir_fd=directory)


def append_to(path: str, data: bytes) -> None:
    """Append `data` to a file shared by processes, creating it if needed.

    One `write` on an `O_APPEND` descriptor: on a local file system the
    bytes land together at the end, whoever else appends.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NO_FOLLOW | getattr(os, "O_BINARY", 0)
    with _parent_of(path) as (directory, name):
        fd = os.open(name, flags, 0o644, dir_fd=directory)
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
    """Atomically move `source` over `destination` (a symlink there is replaced, not followed)."""
    with (
        _parent_of(source) as (source_dir, source_name),
        _parent_of(destination) as (destination_dir, destination_name),
    ):
        os.replace(source_name, destination_name, src_dir_fd=source_dir, dst_dir_fd=destination_dir)


def link(source: str, destination: str) -> None:
    """Give the file `source` the new name `destination`, only if that name is free.

    `FileExistsError` when something (a file, a symlink, anything) already
    has the name: the one atomic "create if absent" of a whole file that
    POSIX offers (`rename` would replace). Neither name is followed if it is
    a symlink.
    """
    with (
        _parent_of(source) as (source_dir, source_name),
        _parent_of(destination) as (destination_dir, destination_name),
    ):
        os.link(
            source_name,
            destination_name,
            src_dir_fd=source_dir,
            dst_dir_fd=destination_dir,
            follow_symlinks=False,
        )


def unlink(path: str) -> None:
    """Delete a file; one that is already gone is fine (another process won)."""
    with contextlib.suppress(FileNotFoundError), _parent_of(path) as (directory, name):
        os.unlink(name, dir_fd=directory)


def touch(path: str) -> None:
    """Set a file's mtime to now (marks a deduplicated object as recently used).

    Never through a symlink: a link's own time changes, not its target's.
    """
    with _parent_of(path) as (directory, name):
        os.utime(name, dir_fd=directory, follow_symlinks=False)


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


def lstat(path: str) -> os.stat_result:
    """`os.lstat` of a path (a symlink's own status, never its target's)."""
    return os.lstat(path)


def open_read(path: str) -> FileIO:
    """Open a file for reading, unbuffered, only if it is a regular file,
    never blocking.

    A hostile folder may hold a FIFO (opening it for reading would wait for
    a writer forever), a device, a socket or a directory where a file
    belongs, or a symlink to any of them: `O_NONBLOCK` makes the open
    itself return at once, `O_NOFOLLOW` refuses a symlink as the last
    component, and anything but a regular file raises `OSError`
    (`EINVAL`) before a byte is read.
    """
    flags = os.O_RDONLY | _NO_FOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        regular = stat_module.S_ISREG(os.fstat(fd).st_mode)
        if regular and hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # a regular file: plain blocking reads from here on
    except BaseException:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", path)
    return os.fdopen(fd, "rb", buffering=0)


def fstat(file: FileIO) -> os.stat_result:
    """`os.fstat` of an open file."""
    return os.fstat(file.fileno())


def read(file: FileIO, count: int = -1) -> bytes:
    """`count` bytes from the file's position (fewer at its end; all to the
    end when `count` is negative). An unbuffered read may return less than
    asked before the end, so this reads until it has them."""
    if count < 0:
        return file.readall()
    parts = [file.read(count) or b""]
    got = len(parts[0])
    while parts[-1] and got < count:
        parts.append(file.read(count - got) or b"")
        got += len(parts[-1])
    return b"".join(parts)


def read_into(file: FileIO, view: memoryview) -> int:
    """Read into `view`; the number of bytes read (0 at the end of the file)."""
    return file.readinto(view) or 0


def map_read(file: FileIO, size: int, *, copy: bool = False) -> mmap.mmap:
    """Map `size` bytes of a file (0: the whole file): read-only, or with
    `copy` copy-on-write (writes change the map, never the file)."""
    return mmap.mmap(file.fileno(), size, access=mmap.ACCESS_COPY if copy else mmap.ACCESS_READ)


def fresh_buffer(size: int) -> memoryview:
    """A writable buffer of `size` bytes to read a file into, not zero-filled.

    `bytearray(size)` zero-fills all of it first, which for a large object
    costs more than the read itself. From 1 MiB up the memory comes fresh
    from the system, its pages given on first write, so the `readinto` is
    the only pass over it: `numpy.empty` when numpy is loaded (the large
    objects are mostly its arrays' buffers; an array on it does not look
    memory-mapped, its `base` chain reaching no `mmap`), else a private
    anonymous map. Below 1 MiB a `bytearray`: zeroing it costs less than
    the system calls of a map.
    """
    if size < _FRESH_MIN:
        return memoryview(bytearray(size))
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        return memoryview(numpy.empty(size, numpy.uint8))
    return memoryview(mmap.mmap(-1, size, **_PRIVATE))


_FRESH_MIN = 1 << 20
_PRIVATE = {"flags": mmap.MAP_PRIVATE} if hasattr(mmap, "MAP_PRIVATE") else {}
"""Unix: not shared with child processes (a shared anonymous map is slower to fill)."""


def scandir(path: str) -> list[os.DirEntry[str]]:
    """The entries of a directory, listed at once."""
    with os.scandir(path) as entries:
        return list(entries)
