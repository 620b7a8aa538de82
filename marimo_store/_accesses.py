"""`AccessBatcher`: hits remembered in memory, written as access records in batches.

A hit writes nothing: the access records wait in memory until the next
put, `close()`, `cleanup()`, exit, or until the oldest has waited
`ACCESS_RECORD_INTERVAL_MS`. So a process that only reads never pays for
creating a log segment on its first hit, and steady hits pay no write.
Every hit is counted (each record carries the hits since the writer's
previous one), for the hit counts of `ls` and `info`. (A killed process
loses its last batch: recency and counts are statistics, never a
correctness matter.)

Implements R7 (docs/format.md §14).
"""

from __future__ import annotations

from marimo_store._entry import now_ms
from marimo_store._errors import StoreIOError
from marimo_store._format.records import encode_access

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from marimo_store._entry import ExecutionKey
    from marimo_store._refresh import LiveIndex
    from marimo_store._writer import WriterSession, WriteSide

ACCESS_RECORD_INTERVAL_MS = 60_000
"""At most one access record per entry per minute per writer: recency for
LRU cleanup without a write on every hit."""


class AccessBatcher:
    """The waiting access records of one store instance.

    `write_side()` is the store's write path, built by the first flush that
    has records to write (a hit alone does not build it); `arm_exit()` makes
    sure the store flushes at interpreter exit."""

    def __init__(
        self,
        live: LiveIndex,
        write_side: Callable[[], WriteSide],
        lock: threading.RLock,
        arm_exit: Callable[[], None],
    ) -> None:
        self._live = live
        self._write_side = write_side
        self._lock = lock
        self._arm_exit = arm_exit
        self._cannot_write = False
        self._noted: dict[ExecutionKey, int] = {}
        self._pending: dict[ExecutionKey, int] = {}
        self._pending_since = 0
        self._hits_waiting: dict[ExecutionKey, int] = {}

    def note(self, key: ExecutionKey) -> None:
        """Remember a hit for LRU cleanup, to be written with the next batch."""
        now = now_ms()
        if self._cannot_write:
            return
        waiting = self._hits_waiting
        waiting[key] = waiting.get(key, 0) + 1
        if now - self._noted.get(key, 0) < ACCESS_RECORD_INTERVAL_MS:
            return
        self._noted[key] = now
        with self._lock:
            self._live.index.add_access(key, now)
            if not self._pending:
                self._pending_since = now
            self._pending[key] = now
            due = now - self._pending_since >= ACCESS_RECORD_INTERVAL_MS
            self._arm_exit()
        if due:
            self.flush()

    def flush(self, session: WriterSession | None = None) -> None:
        """Append the waiting access records in one write (no-op when none wait).

        A store that cannot write (a read-only copy) drops them and stops
        collecting: hits still work.
        """
        with self._lock:
            if not (self._pending or self._hits_waiting) or self._cannot_write:
                return
            pending, self._pending = self._pending, {}
            hits, self._hits_waiting = self._hits_waiting, {}
            counted = [
                (key, at, max(count, 1))
                for key, count in {**dict.fromkeys(pending, 0), **hits}.items()
                if (at := pending.get(key) or self._noted.get(key, 0))
            ]
            if not counted:
                return
            records = [encode_access(key, at, count) for key, at, count in counted]
            try:
                writer = self._write_side().writer
                writer.append(session or writer.session_for_this_process(), *records)
            except (OSError, StoreIOError):
                self._cannot_write = True
                return
            for key, at, count in counted:
                self._live.index.add_access(key, at, count)  # our own records are not read back
