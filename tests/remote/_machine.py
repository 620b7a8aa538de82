"""One "machine" of the two-machine tests: its own process and local tier,
the shared remote. Run as
`python _machine.py LOCAL REMOTE FIRST COUNT SECONDS STRIDE`.

For each key `k<i>` (i from FIRST, COUNT of them; again for SECONDS when it
is not 0, each round STRIDE keys further on, so that rounds meet new keys):
get it; on a miss compute it (counted) and put
it. Every value it gets is checked against what `compute` gives. Prints one
JSON line: executions, hits, wrong values, errors raised by `get`.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings

from marimo_store import Entry, ExecutionKey, FsPersistentStore


def compute(i: int) -> dict[str, object]:
    """A value with a large object (out of the record) and a small one."""
    seed = hashlib.sha256(str(i).encode()).digest()
    return {"n": i * i, "blob": seed * 4096}  # 128 KiB


def main() -> None:
    local, remote, first, count, seconds, stride = sys.argv[1:7]
    warnings.simplefilter("ignore")  # a remote that is down warns; counted below instead
    store = FsPersistentStore(local, remote=remote, remote_timeout=5.0)
    result = {"executions": 0, "hits": 0, "wrong": 0, "errors": 0, "rounds": 0}
    deadline = time.monotonic() + float(seconds)
    while True:
        start = int(first) + result["rounds"] * int(stride)
        for i in range(start, start + int(count)):
            key = ExecutionKey(f"k{i}", "module")
            try:
                found = store.get(key)
            except Exception:
                result["errors"] += 1
                found = None
            if found is None:
                result["executions"] += 1
                store.put(Entry(key, {"variables": compute(i)}))
            elif found.variables == compute(i):
                result["hits"] += 1
            else:
                result["wrong"] += 1
        result["rounds"] += 1
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    store.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
