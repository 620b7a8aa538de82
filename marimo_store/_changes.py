"""Which change notification a store gets here, and whether it gets one.

Linux: inotify read on demand, with no thread (`_inotify.py`). Elsewhere
(macOS FSEvents/kqueue, Windows): a watchdog observer (`_watch.py`). On a
network file system neither: other machines' writes raise no local events,
so the store polls every `refresh_interval`.
"""

from __future__ import annotations

import os
import sys
from typing import Generic, Protocol, TypeVar

WATCHED = ("log", "snapshots")
"""The sub-directories whose changes other writers' entries arrive through."""
USE_INOTIFY = sys.platform.startswith("linux")
"""Tests set it to False to run the watchdog observer on Linux too."""


class ChangeNotifier(Protocol):
    """What a store asks of its change notification."""

    pid: int
    own_segment_prefix: str

    def take_change(self) -> bool:
        """Whether `log/` or `snapshots/` changed since the last call."""

    def close(self) -> None:
        """Stop watching."""


Handle = TypeVar("Handle")
"""What a backend's subscription to one directory is (a watchdog watch, a wd)."""


class WatchedDirectories(Generic[Handle]):
    """The directories one store watches, kept right as they come and go.

    The store's root is watched for `log/` and `snapshots/` appearing or
    being replaced, and those two for files changing. A backend says how to
    subscribe to one directory and how to stop.
    """

    root: str
    changed: bool
    _watches: dict[str, tuple[Handle, int]]  # path -> (subscription, inode)

    def _subscribe(self, path: str) -> Handle:
        raise NotImplementedError

    def _unsubscribe(self, handle: Handle) -> None:
        raise NotImplementedError

    def _watch(self, path: str) -> None:
        inode = os.stat(path).st_ino
        self._watches[path] = (self._subscribe(path), inode)

    def _watch_subdirectories(self) -> None:
        for name in WATCHED:
            path = os.path.join(self.root, name)
            try:
                inode = os.stat(path).st_ino
            except FileNotFoundError:
                inode = -1
            present = self._watches.get(path)
            if present is not None and present[1] != inode:
                self._unsubscribe(present[0])  # the directory was deleted or replaced
                del self._watches[path]
                present = None
            if present is None and inode != -1:
                self._watch(path)
                self.changed = True  # files may have arrived before the watch


def start_change_watch(root: str) -> ChangeNotifier | None:
    """A running watch of the store at `root`, or None: poll instead."""
    from marimo_store._mounts import is_network_filesystem  # noqa: PLC0415

    if is_network_filesystem(root):
        return None
    if USE_INOTIFY:
        from marimo_store._inotify import InotifyWatch  # noqa: PLC0415

        return InotifyWatch.start(root)
    from marimo_store._watch import ChangeWatch  # noqa: PLC0415 - imports watchdog

    return ChangeWatch.start(root)


def native_watching() -> bool:
    """Whether this platform has event-driven watching (else the store polls)."""
    if USE_INOTIFY:
        return True
    from marimo_store._watch import native_watching as watchdog_is_native  # noqa: PLC0415

    return watchdog_is_native()
