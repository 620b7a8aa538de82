"""`WatchedDirectories`: what both change-notification backends share.

`_inotify.py` (Linux) and `_watchdog_observer.py` (elsewhere) each say how
to subscribe to one directory; this module keeps the set of watched
directories right as `log/` and `snapshots/` come and go, and holds the rule
for which changes count (a store's own appends do not). It imports neither
backend, so `_changes.py` can pick one without an import cycle.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import AbstractContextManager
from typing import Generic, TypeVar

from marimo_store._format.layout import WATCHED_DIRECTORIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Self


Handle = TypeVar("Handle")
"""What a backend's subscription to one directory is (a watchdog watch, a wd)."""


class WatchedDirectories(Generic[Handle]):
    """What both backends share: the directories one store watches, kept
    right as they come and go, and the rule for which changes count.

    The store's root is watched for `log/` and `snapshots/` appearing or
    being replaced, and those two for files changing. A backend says how to
    subscribe to one directory and how to stop, and reports each change
    with `_note` (no I/O there: it may run on another thread).
    """

    def __init__(self, root: str) -> None:
        self.pid = os.getpid()
        self.root = root
        self.changed = True  # nothing read yet
        self.own_segment_prefix = ""
        """`<writer id>.` of the store's own log segments, once it writes: its
        own appends are in its index already, and must not make every miss
        after a put re-read the log."""
        self._resubscribe = False
        self._watches: dict[str, tuple[Handle, int]] = {}  # path -> (subscription, inode)

    def take_change(self) -> bool:
        """Whether anything changed since the last call; the caller then
        re-reads (after this call, so that no change falls in between)."""
        self._collect_events()
        if self._resubscribe:
            with self._subscriptions_guard():
                self._resubscribe = False
                try:
                    self._watch_subdirectories()
                except (OSError, RuntimeError):  # e.g. a watch limit reached
                    self.changed = True
        changed, self.changed = self.changed, False
        return changed

    def _note(self, directory: str, name: str, *, moved: bool, gone: bool = False) -> None:
        """One change to `name` in a watched `directory` (`gone`: the
        directory itself was deleted or moved away)."""
        if directory == self.root:
            if gone or name in WATCHED_DIRECTORIES:
                self._resubscribe = True  # log/ or snapshots/ created, deleted or replaced
                self.changed = True
            return  # format.json, objects/, tmp/: nothing an index depends on
        if gone:
            self._resubscribe = True
        elif not moved and self.own_segment_prefix and name.startswith(self.own_segment_prefix):
            return  # this store's own append, or its own segment deleted by a cleanup
        self.changed = True

    def close(self) -> None:
        """Stop watching."""
        raise NotImplementedError

    def _started(self) -> Self | None:
        """This watch, once its directories are watched; None (and nothing
        left watched) where that fails, e.g. a watch limit reached."""
        try:
            self._watch(self.root)
            self._watch_subdirectories()
        except (OSError, RuntimeError):
            self.close()
            return None
        return self

    def _collect_events(self) -> None:
        """Have the events that arrived so far reach `_note`."""

    def _subscriptions_guard(self) -> AbstractContextManager[object]:
        """Held while the watches are changed."""
        return contextlib.nullcontext()

    def _subscribe(self, path: str) -> Handle:
        raise NotImplementedError

    def _unsubscribe(self, handle: Handle) -> None:
        raise NotImplementedError

    def _watch(self, path: str) -> None:
        inode = os.stat(path).st_ino
        self._watches[path] = (self._subscribe(path), inode)

    def _watch_subdirectories(self) -> None:
        for name in WATCHED_DIRECTORIES:
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
