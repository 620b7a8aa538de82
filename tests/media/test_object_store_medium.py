"""The medium contract (`contract.py`) against `ObjectStoreMedium` on
obstore's memory and local stores and on a real S3-compatible server
(moto's, on 127.0.0.1), plus what only an object store has.

Processes racing `put_once` for one key: exactly one wins and a reader
sees its bytes whole; a stalled server costs a bounded wait and a
`MediumError`, never a hang.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import contract
import pytest
from _s3_server import S3Server, serve_s3

from marimo_store._errors import NotSupportedError
from marimo_store._media import MediumError, MediumMissing
from marimo_store._media.object_store import ObjectStoreMedium

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    yield from serve_s3()


@pytest.fixture(params=["memory", "file", "s3"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url(request, tmp_path)


@pytest.fixture(params=["file", "s3"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A medium other processes reach too (a memory store lives in one)."""
    return _url(request, tmp_path)


def _url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "file":
        return (tmp_path / "bucket").as_uri()
    server: S3Server = request.getfixturevalue("s3")
    return server.url(f"media-{os.urandom(4).hex()}")


class Reopen:
    """Builds the medium of `url` again (picklable: it crosses into workers,
    which find the test server's endpoint in the environment they inherit)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self) -> ObjectStoreMedium:
        return ObjectStoreMedium(self.url)


@pytest.mark.parametrize("check", contract.CONTRACT, ids=lambda check: check.__name__)
def test_contract(url: str, check: Callable[[ObjectStoreMedium], None]) -> None:
    check(ObjectStoreMedium(url))


def test_concurrent_put_once_has_one_winner(shared_url: str) -> None:
    contract.concurrent_put_once_has_one_winner(ObjectStoreMedium(shared_url), Reopen(shared_url))


def test_replace_is_atomic_to_a_concurrent_reader(shared_url: str) -> None:
    contract.replace_is_atomic_to_a_concurrent_reader(
        ObjectStoreMedium(shared_url), Reopen(shared_url)
    )


def test_what_only_an_object_store_says(url: str) -> None:
    """No append and no lock (writers seal segments, maintenance takes a
    lease); times of keys are the server's clock; replace overwrites."""
    medium = ObjectStoreMedium(url)
    assert not medium.can_append and not medium.can_lock
    with pytest.raises(NotSupportedError):
        medium.appender("log/x")
    with pytest.raises(NotSupportedError):
        medium.lock("modification")
    assert medium.put_once("objects/ab/cdef", [b"x"])
    info = medium.head("objects/ab/cdef")
    assert info is not None and abs(info.modified_ns / 1e9 - time.time()) < 600
    medium.replace("tables/t", b"one")
    medium.replace("tables/t", b"two")
    assert medium.read("tables/t") == b"two"
    medium.delete("objects/ab/cdef")
    with pytest.raises(MediumMissing):
        medium.read_range("objects/ab/cdef", 0, 1)
    assert medium.put_once("objects/ab/cdef", [b"again"])


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
