"""Eager (not memory-mapped) reads of large objects, in processes without numpy.

A large object is read into memory that is not zero-filled first
(`_fs.fresh_buffer`): numpy's `empty` when numpy is loaded (tests/
test_roundtrip.py reads a 200 MB array that way), else an anonymous map.
These check the second path in fresh processes that never import numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests._scripts import run_python

if TYPE_CHECKING:
    from pathlib import Path

WRITE = """
import hashlib, sys
from marimo_store import Entry, ExecutionKey, FsPersistentStore
blob = bytes(range(256)) * (3 * 4096 + 7)  # about 3 MiB: above the 1 MiB threshold
with FsPersistentStore(sys.argv[1]) as store:
    store.put(Entry.of(ExecutionKey("eager", "large"), {"blob": blob, "text": "é" * 600_000}))
print(hashlib.sha256(blob).hexdigest())
"""

READ = """
import hashlib, sys
from marimo_store import ExecutionKey, FsPersistentStore
with FsPersistentStore(sys.argv[1], memory_map=False) as store:
    for _ in range(2):
        entry = store.get(ExecutionKey("eager", "large"))
        assert entry is not None
        assert entry.variables["text"] == "é" * 600_000
        print(hashlib.sha256(entry.variables["blob"]).hexdigest())
assert "numpy" not in sys.modules, "numpy was imported"
"""


def test_large_eager_read_without_numpy_returns_the_stored_bytes(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    written = run_python(WRITE, path).stdout.split()
    read = run_python(READ, path).stdout.split()
    assert read == written * 2
