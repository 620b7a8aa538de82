"""I/O-error injection: EIO, ENOSPC and EACCES at every file operation of put and cleanup.

SQLite's I/O-error loop: for each scenario of tests/_crashpoints.py (a put
on an empty directory and on a populated store, with both durabilities; a
cleanup; a cleanup with object GC), every operation k of the call fails
with each error, once (the disk recovers) or persistently (every operation
from k on fails). Each time:

- the call raises a `StoreError` whose `__cause__` is the injected OSError
  (never a bare OSError, never a wrong result); the one exception is the
  best-effort record that a large object was verified (`local/`): a put
  whose only failure is there succeeds (the store is then checked as well);
- a once-only error leaves no temp file behind (the failed write cleaned up
  after itself);
- once the errors stop, the same instance puts, reads and cleans up again;
- a fresh instance sees a consistent store: every entry complete and right
  or absent, nothing lost by a put, a cleanup all or nothing.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import pytest
from _crashpoints import (
    KEEP_ALL,
    NEXT,
    SCENARIOS,
    Scenario,
    build_templates,
    call_instrumented,
    fresh_copy,
    open_for,
    read_everything,
    record_operations,
    value_of,
)
from _faults import FileOps

from marimo_store import Entry, ExecutionKey, StoreError, StoreWarning

ERRORS = (errno.EIO, errno.ENOSPC, errno.EACCES)


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    return build_templates(tmp_path_factory.mktemp("templates"))


def temp_files(root: Path) -> set[str]:
    tmp = root / "tmp"
    return {path.name for path in tmp.iterdir()} if tmp.is_dir() else set()


def check_consistent(scenario: Scenario, root: Path) -> None:
    universe = scenario.before | scenario.after | {scenario.new, NEXT}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)  # the planted snapshot
        fresh = open_for(scenario, root)
        present = read_everything(fresh, universe) - {NEXT}
        fresh.close()
    assert scenario.allowed(present), (
        f"present {sorted(present)}; before {sorted(scenario.before)}; "
        f"after {sorted(scenario.after)}"
    )


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_io_error_at_every_operation(
    templates: dict[bool, Path], tmp_path: Path, scenario: Scenario, persistent: bool
) -> None:
    work = tmp_path / "run"
    operations = len(record_operations(templates, scenario, work))
    runs = tolerated = 0
    for k in range(1, operations + 1):
        for code in ERRORS:
            root = fresh_copy(templates, scenario, work)
            planted = temp_files(root)
            ops = FileOps(
                shadow_dir=str(work / "shadow"),
                fault_at=k,
                fault_errno=code,
                persistent=persistent,
            )
            store = open_for(scenario, root)
            outcome = call_instrumented(scenario, store, ops)
            where = f"{scenario.name}, {errno.errorcode[code]} at operation {k}: {ops.log[k - 1]}"
            if outcome is None:
                # Only a best-effort write may fail without failing the call:
                # the record that a large object was verified (`local/`).
                assert f"{os.sep}local" in ops.log[k - 1][1], f"{where}: the call returned"
                assert not persistent or k == len(ops.log), where
                tolerated += 1
            else:
                assert isinstance(outcome, StoreError), f"{where}: the call returned {outcome!r}"
                cause = outcome.__cause__
                assert isinstance(cause, OSError) and not isinstance(cause, StoreError), where
                assert cause.errno == code, f"{where}: cause {cause!r}"
                del outcome, cause
            assert ops.faults_raised >= 1
            if not persistent:
                assert temp_files(root) <= planted, where  # cleanup may delete it
            # The disk works again: the same instance carries on.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", StoreWarning)
                store.put(Entry.of(ExecutionKey(*NEXT), value_of(*NEXT)))
                assert read_everything(store, {NEXT}) == {NEXT}, where
                assert store.cleanup(KEEP_ALL).skipped == [], where
            store.close()
            try:
                check_consistent(scenario, root)
            except AssertionError as error:
                raise AssertionError(f"{where}: {error}") from error
            runs += 1
    print(f"{scenario.name}: k = 1..{operations}, {runs} runs, {tolerated} tolerated")
