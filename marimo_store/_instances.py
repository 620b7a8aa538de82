"""A store instance's life in a process: one instance per configuration when
unpickled, one exit hook that runs only once the instance wrote, and a
write side built only once it writes.

Kept apart from `store.py` (the facade) because all are about processes,
not about the store's files. The invariants: a worker that receives a store
with every task opens it once (one log segment, not one per task), a store
that was only constructed costs nothing at exit, and one that only reads
never imports the write path (`_writer.py`, the `objects` lock, the cleanup
trigger).
"""

from __future__ import annotations

import atexit
import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from typing import Any

    from marimo_store._writer import WriteSide
    from marimo_store.store import FsPersistentStore


_reopened: weakref.WeakValueDictionary[tuple[Any, ...], FsPersistentStore] = (
    weakref.WeakValueDictionary()
)


def reopen(cls: type[FsPersistentStore], config: dict[str, Any]) -> FsPersistentStore:
    """Unpickle a store: copies of one configuration are one instance per
    process (while it is alive), so a worker that receives the store with
    every task (and every handle) opens it once and writes one log segment,
    not one per task."""
    identity = (cls, *sorted(config.items(), key=lambda item: item[0]))
    try:
        store = _reopened.get(identity)
    except TypeError:  # an unhashable cleanup strategy: no sharing
        return cls(**config)
    if store is None:
        store = _reopened[identity] = cls(**config)
    return store


class ExitHook:
    """Runs a store's exit work at interpreter exit once it has something to
    write or seal (never for a store that was only constructed). Holds the
    bound method weakly: the parts it is given to never keep the store alive."""

    def __init__(self, on_exit: Callable[[], None]) -> None:
        self._reference = weakref.WeakMethod(on_exit)
        self._armed = False

    def arm(self) -> None:
        if not self._armed:
            atexit.register(_at_exit, self._reference)
            self._armed = True


def _at_exit(reference: weakref.WeakMethod[Callable[[], None]]) -> None:
    on_exit = reference()
    if on_exit is not None:
        on_exit()


class LazyWriteSide:
    """A store's `WriteSide` (its writer, `objects` lock and cleanup
    trigger), made by `build` at the first write, under the store's lock.
    `build` must hold no reference to the store (the access batcher calls
    this too), so that a store nobody uses still goes away at once."""

    __slots__ = ("_build", "_lock", "built")

    def __init__(self, build: Callable[[], WriteSide], lock: threading.RLock) -> None:
        self._build = build
        self._lock = lock
        self.built: WriteSide | None = None

    def __call__(self) -> WriteSide:
        built = self.built
        if built is None:
            with self._lock:
                if self.built is None:
                    self.built = self._build()
                built = self.built
        return built
