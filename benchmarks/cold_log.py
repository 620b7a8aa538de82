"""Cold first lookup and memory when the entries are still in the log.

The state every reader that starts before the next cleanup sees (issue 17):
one writer puts N tiny entries (`cleanup_on_exit=False`, no snapshot), then
FRESH processes open the store and get one existing key. Reported per N
(medians over --repeat readers): the writer's peak RSS, the reader's first
`get` (open included) and its RSS growth over that `get`, and how many
entry records it decoded. A reader appends an access record, so every
reader gets its own copy of the built store.

    .venv/bin/python -m benchmarks.cold_log [--counts 10000,100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile

WRITE = """\
import resource, sys
from marimo_store import Entry, ExecutionKey, FsPersistentStore
store = FsPersistentStore(sys.argv[1], cleanup_on_exit=False)
for i in range(int(sys.argv[2])):
    store.put(Entry.of(ExecutionKey("block", f"m{i}"), {"i": i}))
store.close()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""

READ = """\
import json, os, sys, time
from marimo_store import ExecutionKey, FsPersistentStore
from marimo_store._format import records

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

before, decoded = rss(), getattr(records, "decoded", None)
start = time.perf_counter()
store = FsPersistentStore(sys.argv[1], cleanup_on_exit=False)
entry = store.get(ExecutionKey("block", sys.argv[2]))
seconds = time.perf_counter() - start
assert entry is not None and entry.variables["i"] == int(sys.argv[2][1:])
count = decoded.entries if decoded is not None else -1
print(json.dumps({"seconds": seconds, "rss": rss() - before, "decoded": count}))
"""


def run(script: str, *args: str) -> str:
    """The standard output of `script` run in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def measure(count: int, repeat: int) -> dict[str, float]:
    """Build a store of `count` entries in the log and read it cold `repeat` times."""
    with tempfile.TemporaryDirectory() as scratch:
        built = f"{scratch}/built"
        writer_rss = int(run(WRITE, built, str(count)))
        readings = []
        for attempt in range(repeat):
            copy = f"{scratch}/copy{attempt}"
            shutil.copytree(built, copy)
            key = f"m{count * (attempt + 1) // (repeat + 1)}"
            readings.append(json.loads(run(READ, copy, key)))
            shutil.rmtree(copy)
    return {
        "writer_rss_mib": writer_rss / 2**20,
        "first_get_ms": statistics.median(r["seconds"] for r in readings) * 1000,
        "reader_rss_growth_mib": statistics.median(r["rss"] for r in readings) / 2**20,
        "decoded": statistics.median(r["decoded"] for r in readings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    for count in map(int, arguments.counts.split(",")):
        print(json.dumps({"entries": count, **measure(count, arguments.repeat)}), flush=True)


if __name__ == "__main__":
    main()
