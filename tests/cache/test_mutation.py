"""A hit returns the same kind of value the miss returned.

Code that mutates its result in place must work on the first run (the miss,
the function's own value) and on every later run (the hit, loaded from the
store), and must never change what the store holds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from _layout import objects_dir
from _scripts import run_python

from marimo_store import Entry, ExecutionKey, FsPersistentStore, MemoryStore, TieredStore

MUTATE = """
import sys
import numpy as np
from marimo_store import FsPersistentStore, persistent_cache
store = FsPersistentStore(sys.argv[1], mmap_mode=sys.argv[2])

@persistent_cache(store=store)
def ramp(n):
    return np.arange(n, dtype=np.float64)

result = ramp(1_000_000)
info = ramp.cache_info()
try:
    result[:10] = -1.0
    result *= 2
    outcome = "mutated"
except ValueError as error:
    outcome = "read-only"
print(info.hits, info.misses, outcome)
"""


def digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in objects_dir(root).glob("??/*")
    }


def test_a_result_mutated_after_a_miss_and_after_a_hit_leaves_the_store_unchanged(
    store_path: Path,
) -> None:
    miss = run_python(MUTATE, str(store_path), "c").stdout.split()
    assert miss == ["0", "1", "mutated"]
    stored = digests(store_path)
    assert any(len(digest) for digest in stored)
    hit = run_python(MUTATE, str(store_path), "c").stdout.split()
    assert hit == ["1", "0", "mutated"]  # writable on the hit too
    assert digests(store_path) == stored  # the object files never changed
    again = run_python(MUTATE, str(store_path), "c").stdout.split()
    assert again == ["1", "0", "mutated"]  # so the next hit starts from the stored value
    check = FsPersistentStore(store_path, cleanup_on_exit=False)
    ((_, value),) = [
        (metadata, check.load_variable(metadata.key, "return")) for metadata in check.entries()
    ]
    np.testing.assert_array_equal(value, np.arange(1_000_000, dtype=np.float64))
    check.close()


def test_mmap_mode_r_gives_read_only_hits(store_path: Path) -> None:
    """joblib's `mmap_mode="r"`: the miss returns the function's own value."""
    assert run_python(MUTATE, str(store_path), "r").stdout.split() == ["0", "1", "mutated"]
    assert run_python(MUTATE, str(store_path), "r").stdout.split() == ["1", "0", "read-only"]


@pytest.mark.parametrize("kind", ["memory", "tiered"])
def test_hits_of_the_other_stores_are_writable_private_values(kind: str, tmp_path: Path) -> None:
    store = (
        MemoryStore()
        if kind == "memory"
        else TieredStore([MemoryStore(), FsPersistentStore(tmp_path / "store")])
    )

    key = store.put(Entry.of(ExecutionKey("ramp", "n"), {"return": np.arange(100_000.0)})).key
    for _ in range(3):
        entry = store.get(key)
        assert entry is not None
        result = entry.variables["return"]
        assert result[0] == 0.0  # what the store holds is unchanged
        result[:10] = -1.0
    store.close()
