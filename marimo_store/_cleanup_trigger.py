"""When a cleanup runs by itself: a put that finds one due, and exit.

A put starts a cleanup in a background thread (`BackgroundCleanup`) when
too many or too old entries wait in the log, or too many segment files
piled up (`CleanupTrigger.due`); at exit a store cleans up if it wrote
entries or segments piled up. Deciding costs no I/O (the live index and
the log reader already know the counts), and this module is all a put
imports: the cleanup itself (`_compaction.py`) is imported when it runs.
"""

from __future__ import annotations

import threading
import time
import warnings

from marimo_store._entry import now_ms
from marimo_store._errors import StoreWarning
from marimo_store._retired import MAX_MARKER_BYTES

TYPE_CHECKING = False
if TYPE_CHECKING:
    import weakref

    from marimo_store._options import StoreOptions
    from marimo_store._refresh import LiveIndex
    from marimo_store.store import FsPersistentStore

_MAX_SEGMENTS_BEFORE_CLEANUP = 64
_TRIGGER_BACKOFF_SECONDS = 30.0


class CleanupTrigger:
    """Whether one store is due a cleanup, from its live index's counts."""

    def __init__(self, options: StoreOptions, live: LiveIndex) -> None:
        self._options = options
        self._live = live

    def due(self) -> bool:
        """Whether a put should start a background cleanup: too many or too
        old entries wait in the log, or too many segments piled up."""
        index = self._live.index
        too_many = 0 <= self._options.max_entries_in_log < index.log_entries
        oldest = index.oldest_log_entry
        timeout_ms = self._options.entry_merge_timeout_seconds * 1000
        too_old = oldest is not None and now_ms() - oldest > timeout_ms
        return too_many or too_old or self.too_many_segments()

    def too_many_segments(self) -> bool:
        """Whether the log holds more segment files than a cleanup should let
        pile up. Every process that only reads still leaves one small segment
        (its access records), so entry counts alone would never trigger.
        The markers of retired segments (a store in git) do not count."""
        segments = self._live.log_reader.segments().values()
        files = sum(1 for s in segments if s.segment_id or s.size > MAX_MARKER_BYTES)
        return files > _MAX_SEGMENTS_BEFORE_CLEANUP


class BackgroundCleanup:
    """The cleanup thread a put starts when one is due; the put does not wait."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._not_before = 0.0

    def start(self, reference: weakref.ref[FsPersistentStore]) -> None:
        """Start a cleanup of the store unless one runs or one started lately."""
        if time.monotonic() < self._not_before:
            return
        if self.is_alive():
            return
        self._not_before = time.monotonic() + _TRIGGER_BACKOFF_SECONDS
        self._thread = threading.Thread(
            target=_clean_up_in_background,
            args=(reference,),
            name="marimo_store-cleanup",
            daemon=True,
        )
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def _clean_up_in_background(reference: weakref.ref[FsPersistentStore]) -> None:
    store = reference()
    if store is None:
        return
    try:
        store.cleanup()
    except Exception as error:  # a background cleanup reports, it never kills anything
        warnings.warn(
            f"marimo_store: background cleanup of {store.path} failed: {error}",
            StoreWarning,
            stacklevel=1,
        )
