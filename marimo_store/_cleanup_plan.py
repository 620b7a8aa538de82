"""`CleanupPlan`: what a cleanup would do, decided before anything changes.

`store.plan_cleanup(strategy)` decides as a cleanup does (under the local
`modification` lock, from every head and the log after them) but writes
nothing: which entries go and why, with their sizes; which object files
only those entries use (object GC would collect them); which snapshot
files and log segments the new snapshot would replace. `plan.execute()`
then does it. The invariant: executing a plan never drops or collects
more than the store holds at that moment allows. It merges the store
again under the locks and drops only the planned entries that are still
live, and object GC works out what every entry references under the
exclusive `objects` lock, as in every cleanup, so puts made after the
plan (even ones reusing a planned object by deduplication) keep what
they wrote. `cleanup()` is a plan decided and executed under one lock;
`cleanup(dry_run=True)` is a plan's `report`.
"""

from __future__ import annotations

from marimo_store._cleanup import CleanupReport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from marimo_store._cleanup import DroppedEntry
    from marimo_store._compaction import Compactor
    from marimo_store._entry import ExecutionKey


class CleanupPlan:
    """A cleanup decided, not done (see the module docstring).

    `report`: what `cleanup(dry_run=True)` returns (the entries dropped with
    reasons and sizes, the entries kept, and what was skipped: a busy lock
    means nothing was decided). `decisions`: key -> reason. `collected`:
    object id -> size of the files only dropped entries use. `snapshots`:
    the snapshot files the new snapshot replaces. `segments`: log segment
    -> bytes of it the new snapshot holds (sealed ones are then deleted).
    """

    __slots__ = (
        "_compactor",
        "collected",
        "decisions",
        "include_content",
        "report",
        "segments",
        "snapshots",
    )

    def __init__(self, compactor: Compactor, *, include_content: bool) -> None:
        self._compactor = compactor
        self.include_content = include_content
        self.report = CleanupReport(dry_run=True)
        self.decisions: dict[ExecutionKey, str] = {}
        self.collected: dict[str, int] = {}
        self.snapshots: list[str] = []
        self.segments: dict[str, int] = {}

    @property
    def dropped(self) -> list[DroppedEntry]:
        """The entries the plan drops, with reasons and sizes."""
        return self.report.dropped

    def execute(self) -> CleanupReport:
        """Do the cleanup this plan describes; return what was done."""
        return self._compactor.execute(self)

    def describe(self) -> list[str]:
        """The plan in lines a person reads, in the order `execute` works:
        each entry dropped with its reason and size, then `rewrites()`,
        then what was skipped (a busy lock: nothing was decided)."""
        lines = [f"drop {d.key}: {d.reason} ({d.content_size} bytes)" for d in self.dropped]
        lines.extend(self.rewrites())
        lines.extend(f"skipped: {why}" for why in self.report.skipped)
        return lines

    def rewrites(self) -> list[str]:
        """What executing writes and collects beyond the drops: the snapshot
        that replaces the old ones and holds the log, and (`include_content`)
        the objects object GC would delete, with their sizes and why."""
        lines = [
            f"write a snapshot replacing {len(self.snapshots)} snapshot files and holding "
            f"{sum(self.segments.values())} bytes of {len(self.segments)} log segments"
        ]
        if self.include_content:
            lines.append(
                f"collect {len(self.collected)} objects ({sum(self.collected.values())} bytes) "
                "that only dropped entries use, and unknown objects older than "
                "object_grace_seconds"
            )
        return lines

    def __repr__(self) -> str:
        return f"CleanupPlan({'; '.join(self.describe())})"
