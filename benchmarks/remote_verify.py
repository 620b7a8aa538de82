"""`RemoteStore.verify()` against a plain read of the same bytes, on a real
S3-compatible server (moto's, on 127.0.0.1) and on obstore's memory store.

    .venv/bin/python -m benchmarks.remote_verify                # 256 MiB
    .venv/bin/python -m benchmarks.remote_verify --size-mib 64

One entry holding one S MiB array; the row is verify's throughput (every
object re-hashed in `HASH_CHUNK` ranged reads, the segment decoded, the
entry's objects checked) against the floor, one `obstore.get` of the same
object and its xxh3-128, what any check of it must do (median of --repeat
rounds, taking turns). moto's server reads the
whole object for each range (see `PART_BYTES` in `remote/_objects.py`), so
on it ranged hashing costs about S / HASH_CHUNK whole reads (READ_AHEAD at
once): the price of never holding a large object in memory at once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np
import obstore

from benchmarks.remote import _turns
from marimo_store import Entry, ExecutionKey
from marimo_store._format.keys import OBJECTS_PREFIX
from marimo_store._hashing import content_digest
from marimo_store._media.object_store import ObjectStoreMedium
from marimo_store.remote import RemoteStore

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests._s3_server import S3Server  # the tests' server fixture, reused


def verify_rate(medium: ObjectStoreMedium, size: int, repeat: int) -> tuple[float, float]:
    """(verify MB/s, floor MB/s) for one entry of `size` bytes on `medium`."""
    store = RemoteStore(medium)
    array = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
    store.put(Entry(ExecutionKey("big", "bench"), {"variables": {"a": array}}))
    (key,) = [info.key for info in medium.list(OBJECTS_PREFIX)]

    def check() -> None:
        assert store.verify().ok

    def floor() -> None:
        content_digest(obstore.get(medium.store, key).bytes())

    rounds = [_turns({"verify": check, "floor": floor}, n) for n in range(repeat)]
    return tuple(  # type: ignore[return-value]
        size / 1e6 / statistics.median(round_[name] for round_ in rounds)
        for name in ("verify", "floor")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    size = arguments.size_mib << 20
    server = S3Server()
    server.start()
    os.environ.update(server.env())
    try:
        print(f"verify of one {arguments.size_mib} MiB entry, median of {arguments.repeat}:")
        print(f"{'medium':<10}{'verify MB/s':>13}{'floor MB/s':>12}{'ratio':>8}")
        for name, medium in (
            ("memory", ObjectStoreMedium("memory://")),
            ("moto S3", ObjectStoreMedium(server.url(f"verify-{os.urandom(4).hex()}"))),
        ):
            ours, floor = verify_rate(medium, size, arguments.repeat)
            print(f"{name:<10}{ours:>13.0f}{floor:>12.0f}{ours / floor:>8.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
