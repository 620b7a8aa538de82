"""Change notification on Linux: inotify, read on demand, with no thread.

watchdog's observer (used on other platforms, `_watchdog_observer.py`) runs three
threads per process, and every write into a watched directory wakes them:
each append to a log segment, the store's own included, then costs about
50 µs of Python on those threads, fighting the writer for the GIL (a
`persistent_cache` miss plus its put went from 51 to 100 µs, measured with
benchmarks/run.py). Here the kernel queues the events on one non-blocking
inotify descriptor per process, and nobody looks at them until a miss asks
`take_change()`: writing costs nothing more, and a miss drains the queue in
one `read` (a few microseconds when it is empty).

If the queue overflows (`IN_Q_OVERFLOW`) every store counts as changed: a
re-read, never a lost change. A forked child opens its own descriptor (the
inherited one shares the parent's queue: reading it would steal the
parent's events).
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading

from marimo_store._watched import WatchedDirectories

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, length of the name that follows
_IN_MODIFY = 0x2
_IN_CLOSE_WRITE = 0x8
_IN_MOVED_FROM = 0x40
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x01000000
_MASK = (
    _IN_MODIFY
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
)
"""Writes, creations, deletions and renames; not opening, reading or closing
unwritten files (a reader's own reads must not look like a change)."""
_GONE = _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_IGNORED
_MOVED = _IN_MOVED_FROM | _IN_MOVED_TO
_READ_SIZE = 65536


class _ProcessInotify:
    """This process's inotify descriptor and who listens to each watch."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._libc: Any = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise _os_error("inotify_init1")
        self.fd: int = fd
        self.lock = threading.RLock()
        self.listeners: dict[int, dict[InotifyWatch, str]] = {}
        """wd -> {watch: the directory it watches}: stores of one process
        that watch one directory share its wd (the kernel gives one)."""

    def add(self, watch: InotifyWatch, path: str) -> int:
        with self.lock:
            wd: int = self._libc.inotify_add_watch(self.fd, os.fsencode(path), _MASK)
            if wd < 0:
                raise _os_error(f"inotify_add_watch {path}")
            self.listeners.setdefault(wd, {})[watch] = path
            return wd

    def remove(self, watch: InotifyWatch, wd: int) -> None:
        with self.lock:
            listeners = self.listeners.get(wd)
            if listeners is None or listeners.pop(watch, None) is None or listeners:
                return
            del self.listeners[wd]
            self._libc.inotify_rm_watch(self.fd, wd)  # fails harmlessly if already gone

    def drain(self) -> None:
        """Hand every queued event to the watches it concerns."""
        with self.lock:
            while True:
                try:
                    data = os.read(self.fd, _READ_SIZE)
                except BlockingIOError:
                    return
                self._dispatch(data)
                if len(data) < _READ_SIZE // 2:
                    return  # it took every queued event: the buffer had room for more

    def _dispatch(self, data: bytes) -> None:
        offset = 0
        while offset < len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            name = os.fsdecode(data[start : start + length].rstrip(b"\0"))
            offset = start + length
            if mask & _IN_Q_OVERFLOW:
                for listeners in self.listeners.values():
                    for watch in listeners:
                        watch.changed = True
                continue
            for watch, path in list(self.listeners.get(wd, {}).items()):
                watch.event(path, mask, name)
            if mask & _IN_IGNORED:
                self.listeners.pop(wd, None)


def _os_error(what: str) -> OSError:
    number = ctypes.get_errno()
    return OSError(number, f"{what}: {os.strerror(number)}")


_process_lock = threading.Lock()
_process: _ProcessInotify | None = None


def _process_inotify() -> _ProcessInotify:
    global _process  # noqa: PLW0603 - one descriptor per process
    with _process_lock:
        if _process is None:
            _process = _ProcessInotify()
        return _process


def _forget_parent_descriptor() -> None:
    """In a forked child: the inherited descriptor shares the parent's queue
    (reading it would steal the parent's events), and a lock some parent
    thread held at the fork would never be released here."""
    global _process, _process_lock  # noqa: PLW0603 - one descriptor per process
    _process_lock = threading.Lock()
    if _process is not None:
        os.close(_process.fd)
        _process = None


os.register_at_fork(after_in_child=_forget_parent_descriptor)


class InotifyWatch(WatchedDirectories[int]):
    """The inotify backend: events wait in the kernel until a miss asks."""

    def __init__(self, root: str, inotify: _ProcessInotify) -> None:
        super().__init__(root)
        self._inotify = inotify

    @classmethod
    def start(cls, root: str) -> InotifyWatch | None:
        """A running watch, or None where the store must poll instead
        (no inotify, or a limit such as `fs.inotify.max_user_watches` reached)."""
        try:
            inotify = _process_inotify()
        except (OSError, AttributeError):  # AttributeError: a libc without inotify
            return None
        return cls(root, inotify)._started()

    def _collect_events(self) -> None:
        self._inotify.drain()

    def _subscriptions_guard(self) -> threading.RLock:
        return self._inotify.lock  # no other store's drain changes `_watches` meanwhile

    def event(self, path: str, mask: int, name: str) -> None:
        """One event of a directory this watch listens to (no I/O)."""
        gone = bool(mask & _GONE)
        if gone and path != self.root:
            lost = self._watches.pop(path, None)
            if lost is not None and mask & _IN_MOVE_SELF:
                self._inotify.remove(self, lost[0])  # it watches the moved directory
        self._note(path, name, moved=bool(mask & _MOVED), gone=gone)

    def close(self) -> None:
        """Stop watching (in a forked child there is nothing of ours to stop)."""
        if self.pid != os.getpid():
            self._watches.clear()  # the parent's (and its lock may be held there)
            return
        with self._inotify.lock:
            for wd, _ in self._watches.values():
                self._inotify.remove(self, wd)
            self._watches.clear()

    def _subscribe(self, path: str) -> int:
        return self._inotify.add(self, path)

    def _unsubscribe(self, handle: int) -> None:
        self._inotify.remove(self, handle)
