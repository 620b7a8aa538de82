"""A worker process of the single-flight tests.

    python -m workers.flight STORE GATE_DIR LEASE
    python -m workers.flight many STORE RUN_DIR KEYS SEED

Waits for `GATE_DIR/go`, then calls the cached `gated_square(7, GATE_DIR)`
with `single_flight=LEASE` and writes the result to `GATE_DIR/result-<pid>`.
The function itself marks `GATE_DIR/started-<pid>` (so the test sees who
computes) and blocks until `GATE_DIR/open` exists, so the test decides how
long a computation takes and can kill or stop the process computing.

`many`: waits for `RUN_DIR/go`, then calls the cached `slow_square(k,
RUN_DIR)` (`single_flight=True`) for every k < KEYS in an order shuffled by
SEED, checking each result. Each computation marks
`RUN_DIR/ran-<k>-<pid>-<ns>` when it starts, so the test counts them.
"""

from __future__ import annotations

import os
import random
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


def slow_square(x: int, run_dir: str) -> int:
    with open(os.path.join(run_dir, f"ran-{x}-{os.getpid()}-{time.time_ns()}"), "w"):
        pass
    time.sleep(0.02)
    return x * x


def many(store_path: str, run_dir: str, keys: str, seed: str) -> None:
    store = FsPersistentStore(store_path, cleanup_on_exit=False)
    square = persistent_cache(store=store, single_flight=True)(slow_square)
    order = list(range(int(keys)))
    random.Random(int(seed)).shuffle(order)
    _wait_for(os.path.join(run_dir, "go"))
    for k in order:
        assert square(k, run_dir) == k * k, k
    with open(os.path.join(run_dir, f"done-{os.getpid()}"), "w"):
        pass


def main(store_path: str, gate_dir: str, lease: str) -> None:
    store = FsPersistentStore(store_path, cleanup_on_exit=False)
    square = persistent_cache(store=store, single_flight=float(lease))(gated_square)
    _wait_for(os.path.join(gate_dir, "go"))
    value = square(7, gate_dir)
    with open(os.path.join(gate_dir, f"result-{os.getpid()}"), "w") as file:
        file.write(str(value))


if __name__ == "__main__":
    if sys.argv[1] == "many":
        many(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
