"""`store.maintenance()`: the one handle maintenance has on a store's insides.

`verify()` and `doctor()` (`_verify.py`, `_doctor.py`) need more of a store
than its public API offers: the merged state of every head and log, a temp
path of this process's writer, and a cleanup. They get it all through this
handle, so the store's private parts can change behind one small interface.
Invariant: no module of `marimo_store` other than `store.py` and the parts
it hands work to touches a `store._...` attribute
(tests/maintenance/test_maintenance_handle.py checks it). Internal: `marimo_store` does
not export it, and the public API does not name it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from marimo_store._cleanup import CleanupReport, CleanupStrategy
    from marimo_store._format.layout import Layout
    from marimo_store._log import LogReader
    from marimo_store._options import StoreOptions
    from marimo_store._snapshot import SnapshotSet, StoreState


class Maintenance:
    """What verify and doctor may use of one open store (see the module docstring)."""

    __slots__ = ("_cleanup", "_merged_state", "_temp_path", "layout", "options")

    def __init__(
        self,
        options: StoreOptions,
        layout: Layout,
        *,
        merged_state: Callable[[], tuple[StoreState, LogReader, SnapshotSet]],
        temp_path: Callable[[], str],
        cleanup: Callable[[CleanupStrategy], CleanupReport],
    ) -> None:
        self.options, self.layout = options, layout
        self._merged_state, self._temp_path, self._cleanup = merged_state, temp_path, cleanup

    @property
    def path(self) -> str:
        """The store directory."""
        return self.options.path

    def merged_state(self) -> tuple[StoreState, LogReader, SnapshotSet]:
        """Every head merged, plus every log record after them: the whole
        current state, the log reader that read it, and the snapshot files."""
        return self._merged_state()

    def temp_path(self) -> str:
        """A fresh name in `tmp/` of this process's writer."""
        return self._temp_path()

    def cleanup(self, strategy: CleanupStrategy) -> CleanupReport:
        """`store.cleanup(strategy)`: a fresh snapshot without what `strategy` drops."""
        return self._cleanup(strategy)
