"""A server that answers 503 (throttles), 500, stops mid-upload or cuts a
download short (a proxy in front of moto's, tests/remote/_flaky_proxy.py):
each costs a retry or a miss, never a wrong value, an error from a tier's
`get`, or a partial object or segment under its final name; and no put that
returned is lost (each loads once read past the proxy)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from _s3_server import S3Server

from marimo_store import Entry, ExecutionKey, FsPersistentStore, StoreIOError
from marimo_store._format.keys import OBJECTS_PREFIX, SEGMENTS_PREFIX, object_id_of_key
from marimo_store._hashing import content_digest
from marimo_store._media.object_store import ObjectStoreMedium
from marimo_store.remote import RemoteStore
from marimo_store.remote._segments import open_sealed

from ._flaky_proxy import FlakyProxy


@pytest.fixture
def flaky(s3: S3Server) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(s3.port, rate=0.3, seed=18)
    yield proxy
    proxy.close()


def value(i: int) -> dict[str, object]:
    return {"n": i, "blob": bytes([i % 251]) * (50_000 + i)}


def test_faults_cost_retries_or_misses_never_wrong_values(
    flaky: FlakyProxy, s3: S3Server, tmp_path: Path
) -> None:
    prefix = f"faults-{os.urandom(4).hex()}"
    direct = s3.url(prefix)
    through = ObjectStoreMedium(direct, endpoint=flaky.endpoint, timeout=5.0, retries=3)
    writer = RemoteStore(through)
    stored, failed = [], 0
    for i in range(40):
        key = ExecutionKey(f"k{i}", "m")
        try:
            stored.append(writer.put(Entry(key, {"variables": value(i)})).key)
        except StoreIOError:
            failed += 1
    wrong = misses = 0
    reader = RemoteStore(ObjectStoreMedium(direct, endpoint=flaky.endpoint, timeout=5.0))
    for _ in range(3):  # a listing that fails is a miss now and a retry later
        try:
            reader.refresh()
            break
        except StoreIOError:
            continue
    for i in range(40):
        try:
            hit = reader.get(ExecutionKey(f"k{i}", "m"))
        except StoreIOError:
            hit = None
        if hit is None:
            misses += 1
        elif hit.variables != value(i):
            wrong += 1
    print(
        f"faults {flaky.faults}, forwarded {flaky.forwarded}, puts failed {failed}, "
        f"misses {misses}, wrong {wrong}"
    )
    assert wrong == 0
    assert sum(flaky.faults.values()) > 20 and len(stored) > 20
    # Nothing a put reported done is lost: read past the proxy, every one loads.
    direct_reader = RemoteStore(direct)
    lost = [key for key in stored if direct_reader.get(key) is None]
    assert lost == []
    assert all(direct_reader.load_variable(key, "n") == int(key.block_id[1:]) for key in stored)
    medium = ObjectStoreMedium(direct)
    for info in medium.list(OBJECTS_PREFIX):  # no partial object under its final name
        assert content_digest(medium.read(info.key)).hex() == object_id_of_key(info.key)
    for info in medium.list(SEGMENTS_PREFIX):  # no partial segment either
        assert open_sealed(medium.read(info.key)) is not None


def test_a_tier_over_a_faulty_remote_never_raises_from_get(
    flaky: FlakyProxy, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT", flaky.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", flaky.endpoint)
    url = s3.url(f"tier-faults-{os.urandom(4).hex()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with FsPersistentStore(tmp_path / "a", remote=url) as a:
            for i in range(15):
                a.put(Entry(ExecutionKey(f"k{i}", "m"), {"variables": value(i)}))
        b = FsPersistentStore(tmp_path / "b", remote=url)
        for i in range(15):
            hit = b.get(ExecutionKey(f"k{i}", "m"))
            assert hit is None or hit.variables == value(i)
        b.close()
