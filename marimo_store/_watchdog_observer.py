"""Change notification off Linux: a watchdog observer tells a store when
`log/` or `snapshots/` changed, so that a miss re-reads other writers' files
only then. (On Linux, `_inotify.py` does this without threads.)

Without it, a miss re-reads them (listing `snapshots/`, a `stat` and a
read per segment) at most every `refresh_interval`: cheap, but not free for
a process that misses often, and up to `refresh_interval` late. With it, a
miss costs nothing while nothing changed, and sees a change as soon as the
event arrives (microseconds to milliseconds after the write).

This module is imported (and watchdog with it, about 40 ms) only when a
store first refreshes after a miss; `import marimo_store`, opening a store
and hits never pay for it. One observer (daemon threads: it never keeps a
process alive) serves every store of a process; a forked child starts its
own on demand, since threads do not survive `fork()`. When a store goes
away, its watches are stopped by a helper thread, so no caller waits.

Where watching is impossible (no native observer, a watch limit reached),
the store falls back to polling; `ChangeWatch.start` returns None then.
"""

from __future__ import annotations

import logging
import os
import queue
import threading

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from marimo_store._watched import WatchedDirectories

TYPE_CHECKING = False
if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver, ObservedWatch


_EVENTS: list[type[FileSystemEvent]] = [
    # Not opened / closed-without-writing / accessed: reading a segment must
    # not look like a change (every refresh would cause the next one).
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    FileClosedEvent,
    DirCreatedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]

_lock = threading.Lock()
_observer: BaseObserver | None = None
_subscribers: dict[ObservedWatch, int] = {}
_retired: queue.SimpleQueue[tuple[FileSystemEventHandler, ObservedWatch]] = queue.SimpleQueue()


def _forget_parent_observer() -> None:
    """In a forked child: the parent's observer threads do not exist here."""
    global _lock, _observer, _retired  # noqa: PLW0603 - the process-wide observer
    _lock = threading.Lock()
    _observer = None
    _subscribers.clear()
    _retired = queue.SimpleQueue()


os.register_at_fork(after_in_child=_forget_parent_observer)


class _StopRaceFilter(logging.Filter):
    """watchdog logs an error when an event arrives while a watch is being
    stopped (the emitter reads once more after `stop`). We stop watches only
    for stores that are gone, whose events nobody wants: not worth a line on
    the user's stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_StopRaceFilter())


def native_watching() -> bool:
    """Whether watchdog has an event-driven observer on this platform (else it
    would poll, which the store does better itself)."""
    return "Polling" not in getattr(Observer, "__name__", "Polling")


def _subscribe(handler: FileSystemEventHandler, path: str) -> ObservedWatch:
    global _observer  # noqa: PLW0603 - the process-wide observer
    with _lock:
        if _observer is None:
            observer = Observer()
            observer.daemon = True
            observer.start()
            _observer = observer
            threading.Thread(
                target=_unsubscribe_retired,
                args=(_retired,),
                name="marimo_store-unwatch",
                daemon=True,
            ).start()
        watch = _observer.schedule(handler, path, recursive=False, event_filter=_EVENTS)
        _subscribers[watch] = _subscribers.get(watch, 0) + 1
        return watch


def _unsubscribe(handler: FileSystemEventHandler, watch: ObservedWatch) -> None:
    """Stop delivering `watch`'s events to `handler`, later; never blocks.

    It runs in a garbage collector's finalizer when a store goes away, that
    is on any thread at any moment (perhaps one another thread holding
    `_lock` waits for): so it takes no lock and only queues the work
    (`SimpleQueue.put` is safe there). Stopping a watch joins a watchdog
    thread, which takes up to a few hundred milliseconds: nobody waits.
    """
    _retired.put((handler, watch))


def _unsubscribe_retired(
    retired: queue.SimpleQueue[tuple[FileSystemEventHandler, ObservedWatch]],
) -> None:
    """The thread that does what `_unsubscribe` queued (one per process)."""
    while True:
        handler, watch = retired.get()
        with _lock:
            if _observer is None or watch not in _subscribers:
                continue
            _subscribers[watch] -= 1
            if _subscribers[watch] > 0:
                _observer.remove_handler_for_watch(handler, watch)
            else:
                del _subscribers[watch]
                _observer.unschedule(watch)


class ChangeWatch(FileSystemEventHandler, WatchedDirectories["ObservedWatch"]):
    """The watchdog backend: events arrive on the observer's thread."""

    @classmethod
    def start(cls, root: str) -> ChangeWatch | None:
        """A running watch, or None where the store must poll instead."""
        return cls(root)._started() if native_watching() else None

    def on_any_event(self, event: FileSystemEvent) -> None:
        """Called on the observer's thread: only flags, no I/O."""
        moved = bool(event.dest_path)
        for raw in (event.src_path, event.dest_path) if moved else (event.src_path,):
            path = os.fsdecode(raw)
            self._note(os.path.dirname(path), os.path.basename(path), moved=moved)

    def close(self) -> None:
        """Stop watching (a no-op in a forked child: the observer is the parent's)."""
        if self.pid != os.getpid():
            return
        for watch, _ in self._watches.values():
            _unsubscribe(self, watch)
        self._watches.clear()

    def _subscribe(self, path: str) -> ObservedWatch:
        return _subscribe(self, path)

    def _unsubscribe(self, handle: ObservedWatch) -> None:
        _unsubscribe(self, handle)
