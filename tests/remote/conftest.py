"""Fixtures of the remote tier's tests: moto's S3 server (one per module)
and a fresh remote URL on it or in a local directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _s3_server import S3Server, serve_s3


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    yield from serve_s3()


@pytest.fixture(params=["file", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A remote of its own: a directory (`file://`) or a prefix of the bucket."""
    if request.param == "file":
        return (tmp_path / "bucket").as_uri()
    server: S3Server = request.getfixturevalue("s3")
    return server.url(f"{request.node.name[:20]}-{os.urandom(4).hex()}".replace("[", "-"))
