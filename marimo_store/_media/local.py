"""The local file system as a medium: one directory, through `_fs`.

Every operation goes through `marimo_store._fs`, which stays the one place
where the store touches files (the crash and fault-injection tests replace
its functions), and stays inside the medium's root: the root is confined
(`_fs.confine`), so no write follows a symlink planted beneath it, reads
open only regular files, and listings never descend into a symlinked
directory.

The rules it keeps (docs/format.md §14):
- W1/W3, write-once by rename: `put_once` and `replace` write the whole
  bytes under a temp name (`temp_path`, in the store's `tmp/`, §3.5; it
  must be on the root's file system), fsync them when `durable`, and only
  then give them their final name, so a reader sees all of a file or none
  of it, and a crash leaves at most a stale temp file (M7). `put_once`
  names the file with `link`, which fails when the name is taken: of
  several processes putting one key, exactly one wins. Where the file
  system has no hard links (FAT, some network shares) it falls back to a
  rename when the name is still free: the bytes stay whole, but two
  racing writers of one key may both report a win (harmless for the
  content-addressed objects, whose writers write the same bytes).
- W4, append only: `appender` creates a new file exclusively
  (`create_new`), so two writers never share a segment.
- W8/M1, local locks: `lock` is an exclusive `flock` (`_locks.LocalLock`).

`local_path` is the local-only escape hatch: the file name of a key, for
what only a local file offers (memory-mapping a large object, an inode's
fingerprint, an mtime set by a deduplicating put). A remote medium has no
such method; the code that calls it is local by nature.

Every `OSError` becomes a `MediumError` (an absent key on a read: a
`MediumMissing`), with the OS error as its `__cause__` and its `errno`.

Implements W3, W4 (docs/format.md §14).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_module

from marimo_store import _fs
from marimo_store._errors import InvalidArgumentError, NotSupportedError
from marimo_store._media import KeyInfo, MediumError, MediumExists, MediumMissing, check_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import BinaryIO, NoReturn

    from marimo_store._hashing import Buffer
    from marimo_store._media import Medium

_PREALLOCATE_MIN_BYTES = 1024 * 1024
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK})
"""What `link` fails with on a file system without hard links."""
_ABSENT = (FileNotFoundError, NotADirectoryError)


def _failed(error: OSError) -> NoReturn:
    """Raise `error` as the medium's error, keeping its errno and file name."""
    if isinstance(error, MediumError):
        raise error
    kind = MediumMissing if isinstance(error, _ABSENT) else MediumError
    if error.errno is None:
        raise kind(str(error)) from error
    raise kind(error.errno, error.strerror, error.filename) from error


class LocalAppender:
    """A file of the medium being extended by its one writer (`LocalMedium.appender`)."""

    def __init__(self, file: BinaryIO, path: str, *, durable: bool) -> None:
        self.file = file
        """The open file: local only (its `fstat` identifies the file)."""
        self.path = path
        self._durable = durable
        self._named = not durable  # whether the file's name is durable in its directory

    def append(self, data: Buffer) -> None:
        """Add `data` at the end in one write (durable once `sync` returns)."""
        try:
            _fs.write_all(self.file, data)
        except OSError as error:
            _failed(error)

    def sync(self) -> None:
        """Make what was appended durable (nothing to do unless `durable`):
        the file, and on the first sync its name in the directory, in that
        order (W4: the header is on disk before the file can be found)."""
        if not self._durable:
            return
        try:
            _fs.fsync(self.file)
            if not self._named:
                _fs.fsync_dir(os.path.dirname(self.path))
                self._named = True
        except OSError as error:
            _failed(error)

    def close(self) -> None:
        """Stop appending; a failure to close loses nothing that was synced."""
        with contextlib.suppress(OSError):
            self.file.close()


class LocalMedium:
    """The files under one local directory, `root` (see the module docstring).

    `temp_path` returns a fresh absolute temp name on the root's file
    system, never the same twice across processes (the store's
    `WriterSession.temp_path`); without it the medium only reads, lists,
    deletes and locks. `durable`: fsync files and directories (docs/format.md
    §10.5, `durability="fsync"`).
    """

    can_append = True
    can_lock = True

    def __init__(
        self, root: str, *, temp_path: Callable[[], str] | None = None, durable: bool = False
    ) -> None:
        self.root = os.path.abspath(root)
        self._prefix = os.path.join(self.root, "")
        self._temp_path = temp_path
        self._durable = durable
        _fs.confine(self.root)

    def __repr__(self) -> str:
        return f"LocalMedium({self.root!r})"

    def local_path(self, key: str) -> str:
        """The file name of `key` (local only: see the module docstring)."""
        check_key(key)
        return self._prefix + (key if os.sep == "/" else key.replace("/", os.sep))

    # -- writes ------------------------------------------------------------------------

    def put_once(self, key: str, parts: Iterable[Buffer]) -> bool:
        """Store `parts` under `key` unless it exists (see `Medium.put_once`)."""
        path = self.local_path(key)
        try:
            temp = self._write_temp(parts)
            try:
                created = self._link_new(temp, path)
                _fs.unlink(temp)
            except BaseException:
                _fs.unlink(temp)  # never leave the temp file behind if it can go
                raise
            if self._durable:  # the winner's name too: our caller relies on it next (W1)
                _fs.fsync_dir(os.path.dirname(path))
        except OSError as error:
            _failed(error)
        return created

    def replace(self, key: str, data: Buffer) -> None:
        """Set `key` to `data` whole, atomically (see `Medium.replace`)."""
        path = self.local_path(key)
        try:
            temp = self._write_temp((data,))
            try:
                self._in_place(_fs.replace, temp, path)
            except BaseException:
                _fs.unlink(temp)
                raise
            if self._durable:
                _fs.fsync_dir(os.path.dirname(path))
        except OSError as error:
            _failed(error)

    def delete(self, key: str) -> None:
        """Forget `key`; absent is fine."""
        path = self.local_path(key)
        try:
            _fs.unlink(path)
        except _ABSENT:
            return
        except OSError as error:
            _failed(error)

    def appender(self, key: str) -> LocalAppender:
        """A new file `key` to extend in place; `MediumExists` if the key is taken."""
        path = self.local_path(key)
        try:
            try:
                file = _fs.create_new(path, append=True)
            except FileNotFoundError:
                _fs.makedirs(os.path.dirname(path))
                file = _fs.create_new(path, append=True)
        except FileExistsError as error:
            raise MediumExists(error.errno, error.strerror, error.filename) from error
        except OSError as error:
            _failed(error)
        return LocalAppender(file, path, durable=self._durable)

    @contextlib.contextmanager
    def lock(self, name: str, *, timeout: float = 60.0) -> Iterator[None]:
        """Hold the exclusive lock file `name` (a key); `MediumError` after `timeout` s."""
        from marimo_store._locks import LocalLock  # noqa: PLC0415 - not on a get's path

        path = self.local_path(name)
        held = contextlib.ExitStack()
        try:
            acquired = held.enter_context(LocalLock(path).hold(exclusive=True, timeout=timeout))
        except OSError as error:
            _failed(error)
        with held:
            if not acquired:
                raise MediumError(errno.ETIMEDOUT, "the lock is held elsewhere", path)
            yield

    def _write_temp(self, parts: Iterable[Buffer]) -> str:
        """The concatenated `parts` in a new temp file, complete (and synced
        when durable); its name."""
        if self._temp_path is None:
            raise NotSupportedError(f"{self!r} was opened to read only")
        views = [memoryview(part) for part in parts]
        size = sum(view.nbytes for view in views)
        temp = self._temp_path()
        try:
            file = _fs.create_new(temp)
        except FileNotFoundError:  # tmp/ was removed (git clean -X, a user) while we ran
            _fs.makedirs(os.path.dirname(temp))
            file = _fs.create_new(temp)
        try:
            with file:
                if size >= _PREALLOCATE_MIN_BYTES:
                    _fs.preallocate(file, size)
                for view in views:
                    _fs.write_all(file, view)
                if self._durable:
                    _fs.fsync(file)
        except BaseException:
            _fs.unlink(temp)
            raise
        return temp

    def _link_new(self, temp: str, path: str) -> bool:
        """Give `temp` the name `path` if it is free; whether it was."""
        try:
            self._in_place(_fs.link, temp, path)
        except FileExistsError:
            return False
        except OSError as error:
            if error.errno not in _NO_HARD_LINKS:
                raise
            if self._lstat(path) is not None:
                return False
            self._in_place(_fs.replace, temp, path)
        return True

    @staticmethod
    def _in_place(move: Callable[[str, str], None], temp: str, path: str) -> None:
        """`move(temp, path)`, creating `path`'s directories the first time."""
        try:
            move(temp, path)
        except FileNotFoundError:  # the first file of its directory
            _fs.makedirs(os.path.dirname(path))
            move(temp, path)

    # -- reads ---------------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        """All bytes of `key`; `MediumMissing` if absent."""
        return self.read_range(key, 0, -1)

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes `start` to `end` (exclusive; -1: to the end) of `key`."""
        if start < 0 or (end < start and end != -1):
            raise InvalidArgumentError(f"not a byte range: {start}..{end}")
        path = self.local_path(key)
        try:
            with _fs.open_read(path) as file:
                if start:
                    file.seek(start)
                return _fs.read(file, -1 if end == -1 else end - start)
        except OSError as error:
            _failed(error)

    def head(self, key: str) -> KeyInfo | None:
        """Size and mtime of `key`; None if absent or not a regular file."""
        found = self.local_stat(key)
        if found is None or not stat_module.S_ISREG(found.st_mode):
            return None
        return KeyInfo(key, found.st_size, found.st_mtime_ns)

    def local_stat(self, key: str) -> os.stat_result | None:
        """`lstat` of whatever has `key`'s name (local only); None if nothing."""
        return self._lstat(self.local_path(key))

    @staticmethod
    def _lstat(path: str) -> os.stat_result | None:
        try:
            return _fs.lstat(path)
        except _ABSENT:
            return None
        except OSError as error:
            _failed(error)

    def touch(self, key: str) -> bool:
        """Set `key`'s mtime to now (local only: a deduplicating put's mark of
        use, W2); False if the key is absent."""
        try:
            _fs.touch(self.local_path(key))
        except _ABSENT:
            return False
        except OSError as error:
            _failed(error)
        return True

    def list(self, prefix: str) -> Iterator[KeyInfo]:
        """Every regular file whose key starts with `prefix`.

        Symlinks, FIFOs and other non-files are not keys, and a symlinked
        directory is never entered. Names that are not valid keys (a sync
        tool's "name (1)" copy) are skipped: no caller could name them.
        """
        check_key(prefix, prefix=True)
        directory = prefix.rpartition("/")[0]
        base = directory + "/" if directory else ""
        yield from (info for info in self._walk(base) if info.key.startswith(prefix))

    def _walk(self, base: str) -> Iterator[KeyInfo]:
        path = self._prefix + base.replace("/", os.sep) if base else self.root
        try:
            entries = _fs.scandir(path)
        except _ABSENT:
            return
        except OSError as error:
            _failed(error)
        for entry in sorted(entries, key=lambda item: item.name):
            key = base + entry.name
            try:
                check_key(key)
            except InvalidArgumentError:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield from self._walk(key + "/")
                elif entry.is_file(follow_symlinks=False):
                    found = entry.stat(follow_symlinks=False)
                    yield KeyInfo(key, found.st_size, found.st_mtime_ns)
            except _ABSENT:
                continue  # deleted while we listed
            except OSError as error:
                _failed(error)


if TYPE_CHECKING:

    def _is_a_medium(medium: LocalMedium) -> Medium:
        """mypy checks here that `LocalMedium` has every operation of `Medium`."""
        return medium
