"""A worker process of the single-flight tests.

    python _flight_workers.py STORE GATE_DIR LEASE

Waits for `GATE_DIR/go`, then calls the cached `gated_square(7, GATE_DIR)`
with `single_flight=LEASE` and writes the result to `GATE_DIR/result-<pid>`.
The function itself marks `GATE_DIR/started-<pid>` (so the test sees who
computes) and blocks until `GATE_DIR/open` exists, so the test decides how
long a computation takes and can kill or stop the process computing.
"""

from __future__ import annotations

import os
import sys
import time

from marimo_store import FsPersistentStore, persistent_cache

_WAIT_LIMIT = 120.0


def _wait_for(path: str) -> None:
    deadline = time.monotonic() + _WAIT_LIMIT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)


def gated_square(x: int, gate_dir: str) -> int:
    with open(os.path.join(gate_dir, f"started-{os.getpid()}"), "w"):
        pass
    _wait_for(os.path.join(gate_dir, "open"))
    return x * x


def main(store_path: str, gate_dir: str, lease: str) -> None:
    store = FsPersistentStore(store_path, cleanup_on_exit=False)
    square = persistent_cache(store=store, single_flight=float(lease))(gated_square)
    _wait_for(os.path.join(gate_dir, "go"))
    value = square(7, gate_dir)
    with open(os.path.join(gate_dir, f"result-{os.getpid()}"), "w") as file:
        file.write(str(value))


if __name__ == "__main__":
    main(*sys.argv[1:])
