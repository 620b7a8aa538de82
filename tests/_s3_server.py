"""A real S3-compatible HTTP server on 127.0.0.1 for the remote tier's tests.

moto's standalone server (`python -m moto.server`, from `moto[server]` in
the `test` extra) runs in a subprocess on a free port; `serve_s3()` starts
it, makes a bucket, points the AWS variables of this process at it (fake
credentials, the endpoint, plain HTTP: credentials come only from the
environment, as in production) and stops it at the end. It skips the test
with a clear message only when the server cannot start. `stop()` and
`start()` in between kill and restart it on the same port (moto keeps its
objects in memory: a restarted server has an empty bucket, which readers
must take as misses).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

BUCKET = "marimo-store-test"
START_SECONDS = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class S3Server:
    """One moto server process on 127.0.0.1 and its bucket."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """The variables a client (this process or a child) needs: fake
        credentials, the endpoint, plain HTTP, and no instance metadata."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def url(self, prefix: str) -> str:
        """The remote URL of a prefix of the bucket."""
        return f"s3://{BUCKET}/{prefix}"

    def start(self) -> None:
        """Start the server (again) on its port and make the bucket."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"moto's server did not listen on port {self.port}")
        if self.process.poll() is not None:
            raise RuntimeError(f"moto's server exited with {self.process.returncode}")
        self._make_bucket()

    def _make_bucket(self) -> None:
        import boto3  # moto's own dependency

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        """Kill the server (a crash, not a shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def serve_s3() -> Iterator[S3Server]:
    """A started server with this process's AWS variables pointing at it;
    skips when moto's server cannot start. For a fixture: `yield from`."""
    try:
        import moto.server  # noqa: F401
    except ImportError as error:
        pytest.skip(f"moto[server] is not installed ({error}): pip install -e '.[test]'")
    server = S3Server()
    try:
        server.start()
    except Exception as error:
        server.stop()
        pytest.skip(f"moto's S3 server could not start on 127.0.0.1: {error}")
    saved = {name: os.environ.get(name) for name in server.env()}
    os.environ.update(server.env())
    try:
        yield server
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
