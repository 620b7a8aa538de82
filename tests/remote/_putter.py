"""A machine that keeps putting entries that share one object, for the GC
test: `python _putter.py REMOTE SECONDS`. Prints how many it put."""

from __future__ import annotations

import sys
import time

import numpy as np

from marimo_store import Entry, ExecutionKey
from marimo_store.remote import RemoteStore

SHARED = np.arange(50_000)  # 400 kB: an object of its own, equal in every entry


def main() -> None:
    remote, seconds = sys.argv[1], float(sys.argv[2])
    store = RemoteStore(remote)
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        own = np.full(20_000, count)
        store.put(Entry(ExecutionKey(f"p{count}", "m"), {"variables": {"s": SHARED, "o": own}}))
        count += 1
        time.sleep(0.05)
    print(count)


if __name__ == "__main__":
    main()
