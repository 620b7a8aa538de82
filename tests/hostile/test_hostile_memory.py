"""Bounded memory: no file is read whole because of its size.

A store holds a good entry, plus a 3 GiB sparse log segment (a valid
header, then a record that claims 200 MiB, then zeros), a second segment
whose first record claims a 2 GiB length, and a 3 GiB sparse snapshot
whose footer claims a plausible layout (so that only mapping it could
tell). Under `RLIMIT_AS` of 1 GiB, in a process of its own, `get`,
`cleanup`, `verify` and the CLI work, report the damage, and the good
entry stays a hit. The worker prints its peak RSS; the test prints it too
(run with `-s` to see it).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import workers
from _hostile import T0, Tripwire, environment, pack, segment_header

from marimo_store import Entry, ExecutionKey, FsPersistentStore
from marimo_store._format.framing import frame

GIB = 1024**3
LIMIT = 1 * GIB
GOOD = {"answer": 42}

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="RLIMIT_AS and sparse files as Linux has them"
)


def _sparse(path: Path, head: bytes, size: int, tail: bytes = b"") -> None:
    with open(path, "wb") as file:
        file.write(head)
        file.truncate(size)
        if tail:
            file.seek(size - len(tail))
            file.write(tail)


def build(path: Path) -> dict[str, Path]:
    store = FsPersistentStore(path, cleanup_on_exit=False)
    store.put(Entry.of(ExecutionKey("good-block", "good-module", T0), GOOD))
    store.close()
    log = path / "log"
    header = frame(pack(segment_header("mallory-1-000000000000")))
    claims_200_mib = struct.pack("<IQ", 200 * 1024 * 1024, 12345)
    big_segment = log / "mallory-1-000000000000.0.log"
    _sparse(big_segment, header + claims_200_mib, 3 * GIB)
    claims_2_gib = struct.pack("<IQ", 2 * GIB, 12345)
    liar = log / "mallory-1-000000000000.1.log"
    liar_header = frame(pack(segment_header("mallory-1-000000000000", segment=1)))
    liar.write_bytes(liar_header + claims_2_gib)
    snapshots = path / "snapshots"
    snapshots.mkdir(exist_ok=True)
    snapshot = snapshots / "00112233445566778899aabbccddeeff.snap"
    footer = struct.pack("<QQ8s", 1024, 2048, b"msnap01\n")
    _sparse(snapshot, frame(pack({"t": "snapshot"})), 3 * GIB, footer)
    return {"segment": big_segment, "liar": liar, "snapshot": snapshot}


def test_huge_sparse_files_under_a_1_gib_address_space(tmp_path: Path) -> None:
    tripwire = Tripwire(tmp_path)
    path = tmp_path / "store"
    home = tmp_path / "home"
    home.mkdir()
    with environment(home), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        planted = build(path)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "xdg"),
        "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MiB of address space per thread arena
    }
    worker = subprocess.run(
        workers.script("memory", str(path), str(LIMIT)),
        capture_output=True,
        text=True,
        env=workers.environment(env),
        cwd=home,  # doctor reads marimo's config from the working directory up
        timeout=600,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    result = json.loads(worker.stdout)
    print(f"\npeak RSS under RLIMIT_AS={LIMIT >> 20} MiB: {result['peak_rss_kib'] / 1024:.0f} MiB")
    assert result["get"] == GOOD
    assert result["get after"] == GOOD
    assert result["cleanup"] == "ok"
    problems = {tuple(problem) for problem in result["verify"]}
    assert ("damaged segment", str(planted["segment"])) in problems
    assert ("damaged segment", str(planted["liar"])) in problems
    assert ("damaged snapshot", str(planted["snapshot"])) in problems
    assert result["cli"] == {"info": 0, "ls": 0, "verify": 1, "doctor": 0, "cleanup --dry-run": 0}
    assert result["peak_rss_kib"] < 512 * 1024  # far below the files' 6 GiB
    tripwire.check()
