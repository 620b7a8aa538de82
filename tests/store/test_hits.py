"""Hit counts per entry and per function, over every process that used a
store, from its access records: `marimo-store ls` and `info` show them, and
a cleanup (a snapshot) keeps them."""

from __future__ import annotations

import json
from pathlib import Path

from _scripts import run_command, run_python

from marimo_store import FsPersistentStore

CALLS = """
import sys
from marimo_store import FsPersistentStore, persistent_cache
store = FsPersistentStore(sys.argv[1])

@persistent_cache(store=store)
def square(x):
    return x * x

for x in sys.argv[2:]:
    square(int(x))
info = square.cache_info()
print(info.hits, info.misses)
"""


def calls(store: Path, *xs: int) -> list[str]:
    """Call `square(x)` for each x in a process of its own; its (hits, misses)."""
    return run_python(CALLS, str(store), *map(str, xs)).stdout.split()


def listed_hits(home: Path, store: Path) -> dict[str, int]:
    """`ls --json`: the hits of each entry, by module hash."""
    document = json.loads(run_command(home, "--json", "ls", "--store", str(store)).stdout)
    return {entry["module_hash"]: entry["hits"] for entry in document["entries"]}


def functions(home: Path, store: Path) -> list[dict[str, object]]:
    document = json.loads(run_command(home, "--json", "info", "--store", str(store)).stdout)
    rows: list[dict[str, object]] = document["functions"]
    return rows


def test_hits_of_every_process_are_counted_and_survive_a_cleanup(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert calls(store, 0, 1, 2) == ["0", "3"]  # three misses, stored
    assert calls(store, 0, 0, 0, 0, 0, 1, 1) == ["7", "0"]  # hits in another process
    assert calls(store, 0, 0, 0) == ["3", "0"]  # ... and in a third

    per_entry = sorted(listed_hits(tmp_path, store).values())
    assert per_entry == [0, 2, 8]
    (row,) = functions(tmp_path, store)
    assert (row["calls"], row["hits"], row["misses"]) == (3, 10, 3)
    assert str(row["function"]).endswith("square")

    FsPersistentStore(store, cleanup_on_exit=False).cleanup()  # counts move to the snapshot
    assert sorted(listed_hits(tmp_path, store).values()) == [0, 2, 8]
    assert calls(store, 2, 2) == ["2", "0"]  # counted in the log on top of the snapshot
    assert sorted(listed_hits(tmp_path, store).values()) == [2, 2, 8]
    FsPersistentStore(store, cleanup_on_exit=False).cleanup()
    assert sorted(listed_hits(tmp_path, store).values()) == [2, 2, 8]
    (row,) = functions(tmp_path, store)
    assert row["hits"] == 12

    table = run_command(tmp_path, "info", "--store", str(store)).stdout
    assert "cached functions" in table and "square" in table
