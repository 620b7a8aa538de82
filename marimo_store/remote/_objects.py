"""Objects on a remote: written once by content hash, read in parallel parts.

An object's key is its content hash (`objects/<id[0:2]>/<id[2:]>`, the same
name as in a store directory), so two machines storing equal values store
one object: the writer asks `head` first and uploads nothing when the
object is there (dedup across machines costs one request), else one
`put_once`. The invariant: a value is only ever built from bytes whose
xxh3-128 is their id (and whose SHA-256 is the signed digest, when trust
checks are on); anything else, or an object gone, is a miss.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from marimo_store._format.keys import object_key
from marimo_store._hashing import CONTENT_HASH_BYTES, content_digest
from marimo_store._media import MediumMissing
from marimo_store._signing import object_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from marimo_store._hashing import Buffer
    from marimo_store._media import Medium

PART_BYTES = 8 * 1024 * 1024
"""The part size to give `part_bytes` on S3 itself (AWS suggests 8-16 MiB ranges).

Not the default: a server that reads the whole object for each range
(moto's: 0.29 s for 1 byte of a 256 MiB object) makes ranged reads slower
than one GET (benchmarks/remote.py: 0.05x the floor for 1 GiB in 8 MiB
parts, 1.03x with one GET)."""


class RemoteObjects:
    """The objects of one remote; counts what it uploads (`uploaded_bytes`).

    `part_bytes`: read objects larger than two parts as ranged requests of
    this size, `parallel` at once (None: one GET each)."""

    def __init__(self, medium: Medium, *, part_bytes: int | None = None, parallel: int = 8) -> None:
        self.medium = medium
        self.part_bytes = part_bytes
        self.parallel = parallel
        self.uploaded_bytes = 0

    def put(self, data: Buffer) -> str:
        """Store `data` unless an object with its bytes is there; its id."""
        object_id = content_digest(data).hex()
        size = memoryview(data).nbytes
        if size == 0:
            return object_id
        key = object_key(object_id)
        present = self.medium.head(key)
        if present is not None and present.size == size:
            return object_id
        if present is not None:  # the wrong size: damaged; its name is its content
            self.medium.replace(key, data)
        elif not self.medium.put_once(key, (data,)):
            return object_id  # another machine stored the same bytes meanwhile
        self.uploaded_bytes += size
        return object_id

    def read(self, object_id: str, size: int, digest: bytes | None) -> bytes | None:
        """The verified bytes of an object, or None (absent or damaged)."""
        if size == 0:
            return b""
        key = object_key(object_id)
        try:
            data = self._fetch(key, size)
        except MediumMissing:
            return None
        if len(data) != size:
            return None
        if content_digest(data).hex() != object_id[: 2 * CONTENT_HASH_BYTES]:
            return None
        if digest is not None and object_digest(data) != digest:
            return None
        return data

    def _fetch(self, key: str, size: int) -> bytes:
        part = self.part_bytes
        if part is None or size <= 2 * part:
            return self.medium.read(key)
        starts = range(0, size, part)
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            parts = pool.map(lambda start: self.medium.read_range(key, start, start + part), starts)
            return b"".join(parts)
