"""Which change notification a store gets here, and whether it gets one.

Linux: inotify read on demand, with no thread (`_inotify.py`). Elsewhere
(macOS FSEvents/kqueue, Windows): a watchdog observer (`_watchdog_observer.py`). On a
network file system neither: other machines' writes raise no local events,
so the store polls every `refresh_interval`.
"""

from __future__ import annotations

import sys
from typing import Protocol

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


def start_change_watch(root: str) -> ChangeNotifier | None:
    """A running watch of the store at `root`, or None: poll instead."""
    from marimo_store._mounts import is_network_filesystem  # noqa: PLC0415

    if is_network_filesystem(root):
        return None
    if USE_INOTIFY:
        from marimo_store._inotify import InotifyWatch  # noqa: PLC0415

        return InotifyWatch.start(root)
    from marimo_store._watchdog_observer import ChangeWatch  # noqa: PLC0415 - imports watchdog

    return ChangeWatch.start(root)


def native_watching() -> bool:
    """Whether this platform has event-driven watching (else the store polls)."""
    if USE_INOTIFY:
        return True
    from marimo_store._watchdog_observer import native_watching as watchdog_is_native  # noqa: PLC0415

    return watchdog_is_native()
