"""`ObjectStoreMedium`: the storage seam on obstore's memory and local
stores and on a real S3-compatible server (moto's, on 127.0.0.1).

The same operations on all three; `put_once` from real processes racing
for one key: exactly one wins and a reader sees its bytes whole; a stalled
server costs a bounded wait and a `MediumError`, never a hang.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _s3_server import S3Server, serve_s3

from marimo_store._errors import InvalidArgumentError, NotSupportedError
from marimo_store._media import MediumError, MediumMissing
from marimo_store._media.object_store import ObjectStoreMedium

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    yield from serve_s3()


@pytest.fixture(params=["memory", "file", "s3"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "file":
        return (tmp_path / "bucket").as_uri()
    server: S3Server = request.getfixturevalue("s3")
    return server.url(f"media-{os.urandom(4).hex()}")


def test_put_once_read_head_list_delete(url: str) -> None:
    medium = ObjectStoreMedium(url)
    assert not medium.can_append and not medium.can_lock
    assert medium.put_once("objects/ab/cdef", [b"hello ", memoryview(b"world")])
    assert not medium.put_once("objects/ab/cdef", [b"other bytes"])
    assert medium.read("objects/ab/cdef") == b"hello world"
    assert medium.read_range("objects/ab/cdef", 6, 11) == b"world"
    assert medium.read_range("objects/ab/cdef", 6, 100) == b"world"
    assert medium.read_range("objects/ab/cdef", 20, 30) == b""
    info = medium.head("objects/ab/cdef")
    assert info is not None and info.key == "objects/ab/cdef" and info.size == 11
    assert abs(info.modified_ns / 1e9 - time.time()) < 600
    assert medium.head("objects/ab/none") is None
    medium.put_once("log/w1.0.log", [b"segment"])
    assert sorted(i.key for i in medium.list("objects/")) == ["objects/ab/cdef"]
    assert sorted(i.key for i in medium.list("")) == ["log/w1.0.log", "objects/ab/cdef"]
    assert list(medium.list("snapshots/")) == []
    medium.replace("tables/t", b"one")
    medium.replace("tables/t", b"two")
    assert medium.read("tables/t") == b"two"
    medium.delete("objects/ab/cdef")
    medium.delete("objects/ab/cdef")  # absent: not an error
    with pytest.raises(MediumMissing):
        medium.read("objects/ab/cdef")
    with pytest.raises(MediumMissing):
        medium.read_range("objects/ab/cdef", 0, 1)
    assert medium.put_once("objects/ab/cdef", [b"again"])


def test_refuses_unsafe_keys_and_what_it_cannot_do(url: str) -> None:
    medium = ObjectStoreMedium(url)
    for key in ("../escape", "/absolute", "a//b", "a/./b", "a b"):
        with pytest.raises(InvalidArgumentError):
            medium.put_once(key, [b"x"])
    with pytest.raises(NotSupportedError):
        medium.appender("log/x")
    with pytest.raises(NotSupportedError):
        medium.lock("modification")


_RACER = textwrap.dedent(
    """
    import sys
    from marimo_store._media.object_store import ObjectStoreMedium
    url, key, fill, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    import time
    time.sleep(max(0.0, start - time.time()))
    won = ObjectStoreMedium(url).put_once(key, [bytes([fill]) * (4 << 20)])
    print("won" if won else "lost")
    """
)


def test_concurrent_put_once_from_processes_has_one_whole_winner(url: str) -> None:
    if url == "memory://":
        pytest.skip("a memory store lives in one process")
    start = time.time() + 2.0
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, url, "objects/cd/race", str(fill), str(start)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for fill in range(1, 5)
    ]
    results = [racer.communicate(timeout=120)[0].strip() for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    assert sorted(results) == ["lost", "lost", "lost", "won"]
    winner = results.index("won") + 1
    data = ObjectStoreMedium(url).read("objects/cd/race")
    assert data == bytes([winner]) * (4 << 20)


def test_a_stalled_server_costs_a_bounded_wait() -> None:
    """A server that accepts connections and never answers: the request
    times out and retries a bounded number of times, then fails."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        medium = ObjectStoreMedium(
            "s3://stalled-bucket/x",
            endpoint=f"http://127.0.0.1:{port}",
            allow_http=True,
            timeout=1.0,
            retries=1,
        )
        began = time.monotonic()
        with pytest.raises(MediumError):
            medium.read("objects/ab/cdef")
        assert time.monotonic() - began < 10


def test_a_stopped_server_is_an_error_and_a_restarted_one_answers(s3: S3Server) -> None:
    medium = ObjectStoreMedium(s3.url("restart"), timeout=2.0, retries=1)
    assert medium.put_once("objects/ab/cdef", [b"x"])
    s3.stop()
    try:
        with pytest.raises(MediumError) as raised:
            medium.read("objects/ab/cdef")
        assert not isinstance(raised.value, MediumMissing)
    finally:
        s3.start()
    with pytest.raises(MediumMissing):  # moto keeps objects in memory: gone, not wrong
        medium.read("objects/ab/cdef")
