"""Single-flight leases: concurrent callers of one key take turns.

Concurrent callers of one key may both compute it. With `single_flight`,
callers on one machine take turns through a lease: a lock file under the
store's `locks/flights/`, held with `flock` while the first caller computes.
The kernel drops the lock when its holder dies, even by `kill -9`, so the
next caller takes over at once; and no caller waits longer than the lease,
so a holder that hangs delays the others by at most that long.

Invariant: a lease only ever delays a caller (by at most its length), never
stops one; where no lock file can be made (a read-only store, a store with
no directory) callers compute without one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from marimo_store import _fs
from marimo_store._errors import InvalidArgumentError
from marimo_store._format.layout import flight_lock
from marimo_store._hashing import content_digest
from marimo_store._locks import LocalLock
from marimo_store.store import FsPersistentStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from marimo_store._entry import ExecutionKey
    from marimo_store._protocol import Store
    from marimo_store.legacy import LegacyPersistentStore

DEFAULT_LEASE_SECONDS = 600.0
_FIRST_PAUSE = 0.005
_LONGEST_PAUSE = 0.1


class _Flight:
    """One caller's turn at computing a key (see the module docstring).

    `waits()` yields pauses until this caller holds the lease or the lease
    expired; a caller that could not create the lock file (a read-only
    store) goes ahead without one.
    """

    def __init__(self, store: Store, key: ExecutionKey, lease: float) -> None:
        locks = _lock_directory(store)
        name = content_digest(f"{key.block_id}\x00{key.module_hash}".encode()).hex()
        self._lock = None if locks is None else LocalLock(flight_lock(locks, name))
        self._deadline = time.monotonic() + lease
        self._held = contextlib.ExitStack()
        self.holding = False
        self.completed = False

    def waits(self) -> Iterator[float]:
        pause = _FIRST_PAUSE
        while not self._try_enter():
            if time.monotonic() >= self._deadline:
                return  # the holder is taking longer than the lease: go ahead
            yield pause
            pause = min(pause * 2, _LONGEST_PAUSE)

    def _try_enter(self) -> bool:
        if self._lock is None:
            return True  # a store with no directory: compute without a lease
        try:
            self.holding = self._held.enter_context(self._lock.hold(exclusive=True, timeout=0))
        except OSError:
            return True  # no lock file possible: compute without a lease
        if not self.holding:
            self._held.close()
        return self.holding

    def __enter__(self) -> _Flight:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._lock is not None and self.holding and self.completed:
                # The result is stored: later callers find it without a lease.
                with contextlib.suppress(OSError):
                    _fs.unlink(self._lock.path)
        finally:
            self._held.close()


def _lease_seconds(single_flight: bool | float) -> float | None:
    if single_flight is False:
        return None
    if single_flight is True:
        return DEFAULT_LEASE_SECONDS
    if isinstance(single_flight, int | float) and single_flight > 0:
        return float(single_flight)
    raise InvalidArgumentError(
        f"single_flight must be True, False or a lease in seconds > 0, got {single_flight!r}"
    )


def _lock_directory(store: Store) -> str | None:
    """Where a store keeps the lock files of single-flight leases: its
    `locks/` (for a `TieredStore`, that of its first tier on disk); None
    for a store with no directory (a `MemoryStore`)."""
    if isinstance(store, FsPersistentStore):
        return store.layout.locks
    # Looked up, not imported: `legacy` imports pickle (a quarter of a cold
    # call's imports), and while it is not imported no store is legacy.
    legacy = sys.modules.get("marimo_store.legacy")
    if legacy is not None:
        legacy_store: type[LegacyPersistentStore] = legacy.LegacyPersistentStore
        if isinstance(store, legacy_store):
            return os.path.join(store.path, ".locks")
    for tier in getattr(store, "tiers", ()):
        found = _lock_directory(tier)
        if found is not None:
            return found
    return None
