"""Functions run in worker processes (multiprocessing, Dask) by the tests of
named objects, handles and cached functions.

They live in an importable module so that spawned workers can import them
by name. Each returns what it saw; the test process asserts.
"""

from __future__ import annotations

import os
from typing import Any

from marimo_store import (
    CachedFunction,
    FsPersistentStore,
    ObjectHandle,
    persistent_cache,
)


def record_execution(log_path: str, point: Any) -> None:
    """Append one line per execution: the side-effect counter of a sweep.

    One `write` of a short line with O_APPEND: lines of concurrent
    processes never interleave.
    """
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"{os.getpid()} {point!r}\n")


def executions(log_path: str) -> list[str]:
    """The lines `record_execution` wrote (none when the file does not exist)."""
    try:
        with open(log_path, encoding="utf-8") as log:
            return log.read().splitlines()
    except FileNotFoundError:
        return []


def resolve(first: ObjectHandle, second: ObjectHandle) -> dict[str, Any]:
    """Resolve two handles shipped separately: what they hold, and whether
    this process gave both the very same object."""
    value = first.get()
    return {
        "pid": os.getpid(),
        "sum": float(value.sum()),
        "shape": tuple(value.shape),
        "same_object": second.get() is value,
        "same_store": first.store is second.store,
    }


def save_square(store: FsPersistentStore, point: int) -> int:
    """Save `point ** 2` as a named object from a worker; return the pid."""
    store.save(f"square-{point}", point * point, metadata={"pid": os.getpid()})
    return os.getpid()


def sweep_function(store: FsPersistentStore, log: str) -> CachedFunction[[int], dict[str, Any]]:
    """A cached function made inside a function (so it pickles by value) that
    records each execution in `log`.

    It calls a helper of its own module: on a worker the by-value copy has
    globals of its own while the helper is the imported one, and its key
    must still be the one computed here.
    """

    @persistent_cache(store=store)
    def simulate(point: int) -> dict[str, Any]:
        record_execution(log, point)
        return {"point": point, "value": sum(i * point for i in range(10_000))}

    return simulate
