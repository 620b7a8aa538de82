"""Local inter-process locks under `locks/`.

Three kinds exist (docs/format.md §10.6; their paths are
`Layout.objects_lock`, `Layout.modification_lock` and `flight_lock` in
`_format/layout.py`): `objects.lock` (shared while a put writes or reuses
objects, exclusive while object GC deletes them), `modification.lock`
(exclusive while a cleanup writes a snapshot), and one `flights/<name>.lock`
per single-flight lease (exclusive while the first caller of a computation
computes it, see `cache.py`). They are local only: lock files are never
trusted across machines (flock does not cross Dropbox or NFS reliably),
which is why nothing correctness-critical depends on them beyond this
machine.

On POSIX they are `flock` locks, opened per acquisition: the kernel drops a
lock when its holder dies, so a killed process never leaves a lock behind
and nobody ever has to delete a lock file by hand. `filelock`'s read-write
lock does the same job portably but costs about 150 µs per acquisition here
(it is built on SQLite) against under 5 µs for `flock`, and the shared lock
sits on the put path; it remains the fallback where `fcntl` does not exist.

Implements W8, M1 (docs/format.md §14).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from marimo_store import _fs

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_FIRST_WAIT = 0.001
_LONGEST_WAIT = 0.05


class LocalLock:
    """A shared/exclusive lock on one file, with a timeout on every acquisition."""

    def __init__(self, path: str) -> None:
        self.path = path

    @contextlib.contextmanager
    def hold(self, *, exclusive: bool, timeout: float) -> Iterator[bool]:
        """Hold the lock for the `with` block; yields False if it timed out.

        The caller decides what a timeout means: a put goes on without the
        lock (the worst case is a miss later), a cleanup skips and reports.
        """
        if fcntl is None:  # pragma: no cover - Windows
            with self._hold_portably(exclusive=exclusive, timeout=timeout) as acquired:
                yield acquired
            return
        _fs.makedirs(os.path.dirname(self.path))
        fd = _fs.open_lock_file(self.path)
        try:
            yield _acquire(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, timeout)
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @contextlib.contextmanager
    def _hold_portably(
        self, *, exclusive: bool, timeout: float
    ) -> Iterator[bool]:  # pragma: no cover - Windows
        from filelock import ReadWriteLock, Timeout  # noqa: PLC0415

        _fs.makedirs(os.path.dirname(self.path))
        lock = ReadWriteLock(self.path + ".db", timeout=timeout, is_singleton=False)
        acquire = lock.write_lock if exclusive else lock.read_lock
        try:
            with acquire():
                yield True
        except Timeout:
            yield False
        finally:
            lock.close()


def _acquire(fd: int, mode: int, timeout: float) -> bool:
    assert fcntl is not None
    deadline = time.monotonic() + timeout
    wait = _FIRST_WAIT
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(wait, remaining))
            wait = min(wait * 2, _LONGEST_WAIT)
        else:
            return True
