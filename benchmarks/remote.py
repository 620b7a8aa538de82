"""The remote tier against a real S3-compatible server (moto's, on 127.0.0.1).

    .venv/bin/python -m benchmarks.remote                 # 256 MiB
    .venv/bin/python -m benchmarks.remote --size-mib 1024 # the 1 GiB of issue 18

Rows (medians over --repeat rounds, the two systems taking turns):

- push and pull of one S MiB array (`RemoteStore.put`, then `get` in a new
  `RemoteStore`: one HEAD and one conditional PUT; parallel ranged GETs of
  8 MiB, or one GET) against the floor: a plain `obstore.put` (one request,
  as moto's server fails multipart uploads of 1 GiB) / `obstore.get` of the
  same bytes to the same server, with the same client settings;
- a tiny remote hit: a new machine's first `get` (a listing and one
  segment) and the next one, in requests and milliseconds, and a miss;
- dedup across two machines: bytes the second machine uploads for equal
  values (objects, and the segment holding its record).

moto's server is pure Python on the same 2 cores as the client, so the
absolute throughput is the server's, not S3's; the ratio to the floor is
what this measures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import obstore

from benchmarks import _common as common
from marimo_store import Entry, ExecutionKey
from marimo_store._media.counting import CountingMedium
from marimo_store._media.object_store import ObjectStoreMedium
from marimo_store.remote import RemoteStore
from marimo_store.remote._objects import PART_BYTES

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests._s3_server import S3Server  # the tests' server fixture, reused


def _seconds(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def _turns(actions: dict[str, Callable[[], object]], round_: int) -> dict[str, float]:
    """Seconds of each action, in alternating order from round to round."""
    names = list(actions) if round_ % 2 == 0 else list(actions)[::-1]
    return {name: _seconds(actions[name]) for name in names}


def throughput(server: S3Server, size: int, repeat: int) -> list[tuple[str, float, float]]:
    """(row, marimo_store MB/s, floor MB/s) for push and pull."""
    array = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
    data = array.tobytes()
    timings: dict[str, list[tuple[float, float]]] = {}
    for round_ in range(repeat):
        prefix = server.url(f"bench-{round_}-{os.urandom(3).hex()}")
        floor = ObjectStoreMedium(prefix).store
        key = ExecutionKey(f"big{round_}", "bench")
        entry = Entry(key, {"variables": {"a": array}})
        times = _turns(
            {
                "floor": partial(obstore.put, floor, "floor/x", data, use_multipart=False),
                "ours": partial(RemoteStore(prefix).put, entry),
            },
            round_,
        )
        timings.setdefault("push", []).append((times["ours"], times["floor"]))
        loaded: list[Entry | None] = []
        for row, part_bytes in (
            ("pull (8 MiB ranges)", PART_BYTES),
            ("pull (default: one GET)", None),
        ):
            reader = RemoteStore(prefix, part_bytes=part_bytes)
            times = _turns(
                {
                    "floor": lambda: bytes(obstore.get(floor, "floor/x").bytes()),  # noqa: B023
                    "ours": lambda: loaded.append(reader.get(key)),  # noqa: B023
                },
                round_,
            )
            timings.setdefault(row, []).append((times["ours"], times["floor"]))
        for hit in loaded:
            assert hit is not None and np.array_equal(hit.variables["a"], array)
    mb = size / 1e6
    return [
        (
            row,
            mb / statistics.median(t[0] for t in rows),
            mb / statistics.median(t[1] for t in rows),
        )
        for row, rows in timings.items()
    ]


def tiny_hit(server: S3Server, repeat: int) -> dict[str, float]:
    """Requests and milliseconds of a tiny remote hit, first and next, and of a miss."""
    prefix = server.url(f"tiny-{os.urandom(3).hex()}")
    key = ExecutionKey("add", "bench")
    RemoteStore(prefix).put(Entry(key, {"variables": {"result": 3}}))
    first_ms, next_ms, miss_ms = [], [], []
    requests_first = requests_next = requests_miss = 0
    for _ in range(repeat):
        counting = CountingMedium(ObjectStoreMedium(prefix))
        store = RemoteStore(counting, refresh_interval=60)
        first_ms.append(1000 * _seconds(partial(store.get, key)))
        requests_first = sum(counting.calls.values())
        next_ms.append(1000 * _seconds(partial(store.get, key)))
        requests_next = sum(counting.calls.values()) - requests_first
        miss_ms.append(1000 * _seconds(partial(store.get, ExecutionKey("absent", "bench"))))
        requests_miss = sum(counting.calls.values()) - requests_first - requests_next
    return {
        "first hit (new process) ms": statistics.median(first_ms),
        "first hit requests": requests_first,
        "next hit ms": statistics.median(next_ms),
        "next hit requests": requests_next,
        "miss ms": statistics.median(miss_ms),
        "miss requests": requests_miss,
    }


def dedup(server: S3Server, size: int) -> dict[str, int]:
    """Bytes each machine uploads for equal results (objects, then segments)."""
    prefix = server.url(f"dedup-{os.urandom(3).hex()}")
    array = np.random.default_rng(1).random(size // 8)
    uploaded = {}
    for machine in ("first", "second"):
        medium = ObjectStoreMedium(prefix)
        before = {info.key: info.size for info in medium.list("log/")}
        store = RemoteStore(medium)
        store.put(Entry(ExecutionKey(f"run-on-{machine}", "bench"), {"variables": {"a": array}}))
        segments = sum(i.size for i in medium.list("log/") if i.key not in before)
        uploaded[f"{machine} machine: object bytes"] = store.objects.uploaded_bytes
        uploaded[f"{machine} machine: segment bytes"] = segments
    return uploaded


def section(
    size_mib: int,
    *,
    rates: list[tuple[str, float, float]],
    hit: dict[str, float],
    uploads: dict[str, int],
    machine: list[str],
    command: str,
) -> str:
    """The "## Remote" section of docs/benchmarks.md."""
    lines = [
        common.REMOTE_SECTION,
        "",
        "The remote tier (docs/remote.md) against moto's S3-compatible server on "
        f"127.0.0.1, measured by [benchmarks/remote.py](../benchmarks/remote.py) (`{command}`), "
        "which describes each row. The server is pure Python on the same 2 cores as the "
        "client: its throughput is moto's, not S3's; the ratio to the floor (a plain "
        "`obstore.put` / `obstore.get` of the same bytes to the same server) is the figure.",
        "",
        *machine,
        "",
        f"| {size_mib} MiB | marimo_store | floor | ratio |",
        "|---|---:|---:|---:|",
        *(
            f"| {row} | {ours:.0f} MB/s | {floor:.0f} MB/s | {ours / floor:.2f} |"
            for row, ours, floor in rates
        ),
        "",
        "| tiny remote hit | |",
        "|---|---:|",
        *(f"| {name} | {value:.2f} |" for name, value in hit.items()),
        "",
        f"| dedup of a {min(size_mib, 64)} MiB result across two machines | bytes uploaded |",
        "|---|---:|",
        *(f"| {name} | {value} |" for name, value in uploads.items()),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--publish", action="store_true", help="write docs/benchmarks.md")
    arguments = parser.parse_args()
    server = S3Server()
    server.start()
    os.environ.update(server.env())
    try:
        size = arguments.size_mib << 20
        print(f"push/pull of {arguments.size_mib} MiB, median of {arguments.repeat}:")
        print(f"{'row':<25}{'marimo_store MB/s':>18}{'floor MB/s':>12}{'ratio':>8}")
        rates = throughput(server, size, arguments.repeat)
        for row, ours, floor in rates:
            print(f"{row:<25}{ours:>18.0f}{floor:>12.0f}{ours / floor:>8.2f}")
        print("tiny remote hit:")
        hit = tiny_hit(server, max(arguments.repeat, 5))
        for name, value in hit.items():
            print(f"  {name:<30}{value:>10.2f}")
        print(f"dedup of a {min(size, 64 << 20) >> 20} MiB result across two machines:")
        uploads = dedup(server, min(size, 64 << 20))
        for name, value in uploads.items():
            print(f"  {name:<34}{value:>12}")
    finally:
        server.stop()
    if arguments.publish:
        command = "python -m benchmarks.remote " + " ".join(sys.argv[1:])
        machine = common.machine_info(tempfile.gettempdir())
        text = section(
            arguments.size_mib,
            rates=rates,
            hit=hit,
            uploads=uploads,
            machine=machine,
            command=command.strip(),
        )
        common.publish_section(
            text, os.path.join(common.REPO, "docs", "benchmarks.md"), common.REMOTE_SECTION
        )


if __name__ == "__main__":
    main()
