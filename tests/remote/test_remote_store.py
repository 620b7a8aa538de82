"""`RemoteStore`: the store's format on obstore's memory and local stores and
on a real S3-compatible server (moto's, on 127.0.0.1).

Objects by content hash (a second writer of equal values uploads nothing),
one sealed segment per flush that decodes with the format package's own
functions, tombstones, a truncated segment or a damaged object read as a
miss (never a wrong value), large objects read in parallel ranged parts,
sealed segments cached locally, and the trust rules of docs/security.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from _s3_server import S3Server

from marimo_store import Entry, ExecutionKey, generate_signing_key
from marimo_store._format.keys import OBJECTS_PREFIX, SEGMENTS_PREFIX, object_key
from marimo_store._format.records import StoredEntry
from marimo_store._media.counting import CountingMedium
from marimo_store._media.object_store import ObjectStoreMedium
from marimo_store._signing import KEY_ENV, KEY_FILE_ENV
from marimo_store.remote import RemoteStore
from marimo_store.remote._segments import open_sealed

KEY = ExecutionKey("block", "module")


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


@pytest.fixture(params=["memory", "file", "s3"])
def medium(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStoreMedium:
    if request.param == "memory":
        return ObjectStoreMedium("memory://")
    if request.param == "file":
        return ObjectStoreMedium((tmp_path / "bucket").as_uri())
    server: S3Server = request.getfixturevalue("s3")
    return ObjectStoreMedium(server.url(f"store-{os.urandom(4).hex()}"))


def test_a_second_machine_hits_and_uploads_nothing_for_equal_values(
    medium: ObjectStoreMedium,
) -> None:
    array = np.arange(300_000)
    first = RemoteStore(medium)
    stored = first.put(Entry(KEY, {"variables": {"a": array, "n": 7}}))
    assert first.objects.uploaded_bytes == array.nbytes
    second = RemoteStore(medium)
    hit = second.get(KEY)
    assert hit is not None and hit.key == stored.key
    assert np.array_equal(hit.variables["a"], array) and hit.variables["n"] == 7
    second.put(Entry(ExecutionKey("other", "module"), {"variables": {"a": array}}))
    assert second.objects.uploaded_bytes == 0
    assert [metadata.key.block_id for metadata in second.entries()] == ["block", "other"]
    assert second.load_variable(KEY, "n") == 7


def test_the_remote_holds_the_store_format(medium: ObjectStoreMedium) -> None:
    store = RemoteStore(medium)
    metadata = store.put(Entry(KEY, {"variables": {"a": np.ones(10_000)}}))
    keys = sorted(info.key for info in medium.list(""))
    segments = [key for key in keys if key.startswith(SEGMENTS_PREFIX)]
    objects = [key for key in keys if key.startswith(OBJECTS_PREFIX)]
    assert len(segments) == 1 and len(objects) == 1
    records = open_sealed(medium.read(segments[0]))
    assert records is not None and len(records) == 1
    assert isinstance(records[0], StoredEntry) and records[0].metadata == metadata
    buffer = metadata.contents["variables"]["a"].buffers[0]
    assert objects == [object_key(buffer.id)]


def test_tombstones_and_named_objects_travel(medium: ObjectStoreMedium) -> None:
    writer = RemoteStore(medium)
    writer.put(Entry(KEY, {"variables": {"x": 1}}))
    writer.save("model", {"weights": [1, 2, 3]})
    reader = RemoteStore(medium)
    assert reader.load("model") == {"weights": [1, 2, 3]}
    assert writer.delete_entries([KEY]) == 1
    assert writer.get(KEY) is None
    reader.refresh()
    assert reader.get(KEY) is None
    assert RemoteStore(medium).get(KEY) is None


def test_a_truncated_segment_and_a_damaged_object_are_misses(medium: ObjectStoreMedium) -> None:
    writer = RemoteStore(medium)
    metadata = writer.put(Entry(KEY, {"variables": {"a": np.arange(100_000)}}))
    (segment,) = [info.key for info in medium.list(SEGMENTS_PREFIX)]
    whole = medium.read(segment)
    medium.put_once(f"{SEGMENTS_PREFIX}half-1-000000000000.0.log", [whole[: len(whole) // 2]])
    other = ExecutionKey("half", "module")
    assert open_sealed(whole[:-1]) is None
    buffer = metadata.contents["variables"]["a"].buffers[0]
    data = bytearray(medium.read(object_key(buffer.id)))
    data[100] ^= 0xFF
    medium.replace(object_key(buffer.id), bytes(data))
    reader = RemoteStore(medium)
    assert reader.get(KEY) is None  # damaged: a miss, never a wrong value
    assert reader.get(other) is None
    assert len(reader.entries()) == 1


def test_large_objects_are_read_in_parallel_parts(medium: ObjectStoreMedium) -> None:
    counting = CountingMedium(medium)
    array = np.random.default_rng(0).random(200_000)  # 1.6 MB
    RemoteStore(medium).put(Entry(KEY, {"variables": {"a": array}}))
    reader = RemoteStore(counting, part_bytes=100_000, parallel=4)
    hit = reader.get(KEY)
    assert hit is not None and np.array_equal(hit.variables["a"], array)
    assert counting.calls["read_range"] == 16


def test_sealed_segments_are_cached_locally(medium: ObjectStoreMedium, tmp_path: Path) -> None:
    writer = RemoteStore(medium)
    for n in range(3):
        writer.put(Entry(ExecutionKey(f"b{n}", "module"), {"variables": {"x": n}}))
    first = CountingMedium(medium)
    assert len(RemoteStore(first, cache_dir=tmp_path / "cache").entries()) == 3
    assert first.calls["read"] == 3
    second = CountingMedium(medium)
    assert len(RemoteStore(second, cache_dir=tmp_path / "cache").entries()) == 3
    assert second.calls == {"list": 1}


def test_a_miss_within_the_refresh_interval_costs_no_request(medium: ObjectStoreMedium) -> None:
    counting = CountingMedium(medium)
    store = RemoteStore(counting, refresh_interval=60)
    assert store.get(KEY) is None
    calls = dict(counting.calls)
    for _ in range(10):
        assert store.get(KEY) is None
    assert counting.calls == calls


def test_signed_entries_are_trusted_and_unsigned_ones_are_not(
    medium: ObjectStoreMedium, tmp_path: Path
) -> None:
    key_file = tmp_path / "team.pem"
    fingerprint = generate_signing_key(key_file)
    RemoteStore(medium, signing_key=key_file).put(Entry(KEY, {"variables": {"x": [1]}}))
    unsigned = ExecutionKey("unsigned", "module")
    RemoteStore(medium).put(Entry(unsigned, {"variables": {"x": [2]}}))
    reader = RemoteStore(medium, verify_signatures="on", trusted_signers=[fingerprint])
    hit = reader.get(KEY)
    assert hit is not None and hit.variables["x"] == [1]
    with pytest.warns(UserWarning, match="not signed"):
        assert reader.get(unsigned) is None
