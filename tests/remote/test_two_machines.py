"""Two "machines" sharing one bucket on a real S3-compatible server.

Separate processes with separate local tiers and one remote (moto's server
on 127.0.0.1): A computes and B hits without computing; both write at once
and a third sees everything; the server is killed and restarted while both
run, which costs misses and retries, never a wrong value, an error from
`get`, or a partial object under its final name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _s3_server import S3Server

from marimo_store._format.keys import OBJECTS_PREFIX, object_id_of_key
from marimo_store._hashing import content_digest
from marimo_store._media.object_store import ObjectStoreMedium

MACHINE = Path(__file__).with_name("_machine.py")


@pytest.fixture
def remote(s3: S3Server) -> str:
    return s3.url(f"two-{os.urandom(4).hex()}")


def start(
    local: Path, remote: str, first: int, count: int, *, seconds: float = 0, stride: int = 0
) -> subprocess.Popen[str]:
    arguments = [str(local), remote, str(first), str(count), str(seconds), str(stride)]
    return subprocess.Popen(
        [sys.executable, str(MACHINE), *arguments],
        stdout=subprocess.PIPE,
        text=True,
        cwd=local.parent,
    )


def finish(machine: subprocess.Popen[str]) -> dict[str, int]:
    output, _ = machine.communicate(timeout=240)
    assert machine.returncode == 0, output
    result: dict[str, int] = json.loads(output.strip().splitlines()[-1])
    return result


def no_partial_objects(remote: str) -> int:
    """How many objects on the remote are checked (each must hash to its name)."""
    medium = ObjectStoreMedium(remote)
    checked = 0
    for info in medium.list(OBJECTS_PREFIX):
        object_id = object_id_of_key(info.key)
        assert object_id is not None, info.key
        assert content_digest(medium.read(info.key)).hex() == object_id, info.key
        checked += 1
    return checked


def test_a_computes_and_b_hits_without_recomputing(remote: str, tmp_path: Path) -> None:
    a = finish(start(tmp_path / "a", remote, 0, 10))
    assert a == {"executions": 10, "hits": 0, "wrong": 0, "errors": 0, "rounds": 1}
    b = finish(start(tmp_path / "b", remote, 0, 10))
    assert b == {"executions": 0, "hits": 10, "wrong": 0, "errors": 0, "rounds": 1}
    assert no_partial_objects(remote) == 10


def test_both_write_at_once_and_a_third_sees_everything(remote: str, tmp_path: Path) -> None:
    a = start(tmp_path / "a", remote, 0, 30)  # k0..k29
    b = start(tmp_path / "b", remote, 20, 30)  # k20..k49: ten keys shared
    results = [finish(a), finish(b)]
    for result in results:
        assert result["wrong"] == 0 and result["errors"] == 0
    assert sum(result["executions"] for result in results) >= 50
    c = finish(start(tmp_path / "c", remote, 0, 50))
    assert c == {"executions": 0, "hits": 50, "wrong": 0, "errors": 0, "rounds": 1}
    assert no_partial_objects(remote) == 50


def test_a_server_killed_and_restarted_costs_misses_never_wrong_values(
    s3: S3Server, remote: str, tmp_path: Path
) -> None:
    a = start(tmp_path / "a", remote, 0, 6, seconds=12, stride=10)  # round r: k10r..k10r+5
    # B runs five rounds (about 2 s) behind on keys that overlap A's by half.
    b = start(tmp_path / "b", remote, 3 - 50, 6, seconds=12, stride=10)
    time.sleep(3)
    s3.stop()
    time.sleep(1.5)
    s3.start()  # moto keeps objects in memory: the bucket comes back empty
    results = [finish(a), finish(b)]
    print("kill and restart:", results)  # shown with -s: the figures of the closing note
    for result in results:
        assert result["wrong"] == 0 and result["errors"] == 0
        assert result["rounds"] >= 2
    assert sum(result["hits"] for result in results) > 0  # the remote served shared keys
    no_partial_objects(remote)
    rounds = max(result["rounds"] for result in results)
    c = finish(start(tmp_path / "c", remote, 0, 10 * rounds))
    assert c["wrong"] == 0 and c["errors"] == 0 and c["hits"] > 0
