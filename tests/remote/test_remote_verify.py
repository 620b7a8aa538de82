"""`RemoteStore.verify()` and `marimo-store verify --remote` on obstore's
memory store and on a real S3-compatible server (moto's, on 127.0.0.1).

Damage is made through the medium itself (an object overwritten with other
bytes, a segment cut short, an object deleted), as a faulty disk, a bad
copy or a person would; each is found with its kind, a repair fixes it, a
second verify is clean, and a get of a damaged entry is a miss, never a
wrong value.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import obstore
import pytest
from _s3_server import S3Server

from marimo_store import Entry, ExecutionKey, FsPersistentStore
from marimo_store._findings import VerifyReport
from marimo_store._format.framing import pack
from marimo_store._format.keys import (
    LEASE_KEY,
    OBJECTS_PREFIX,
    QUARANTINE_PREFIX,
    SEGMENTS_PREFIX,
    object_key,
)
from marimo_store._media.object_store import ObjectStoreMedium
from marimo_store.cli import main
from marimo_store.remote import RemoteStore, _verify
from marimo_store.remote._lease import release_lease, take_lease

KEY = ExecutionKey("block", "module")
OTHER = ExecutionKey("other", "module")


@pytest.fixture(params=["memory", "s3"])
def medium(request: pytest.FixtureRequest) -> ObjectStoreMedium:
    if request.param == "memory":
        return ObjectStoreMedium("memory://")
    server: S3Server = request.getfixturevalue("s3")
    return ObjectStoreMedium(server.url(f"verify-{os.urandom(4).hex()}"))


def kinds(report: VerifyReport) -> list[str]:
    return sorted(problem.kind for problem in report.problems)


def two_entries(store: RemoteStore) -> str:
    """Put an entry with a large object and a small one; the large object's id."""
    stored = store.put(Entry(KEY, {"variables": {"a": np.arange(50_000), "n": 1}}))
    store.put(Entry(OTHER, {"variables": {"b": np.ones(1000)}}))
    (object_id,) = [ref.id for ref in stored.objects().values() if not ref.inline]
    return object_id


def test_a_clean_remote_verifies_clean(medium: ObjectStoreMedium) -> None:
    store = RemoteStore(medium)
    two_entries(store)
    seen: list[tuple[int, int]] = []
    report = store.verify(progress=lambda done, total: seen.append((done, total)))
    assert report.ok, report.problems
    assert (report.segments_checked, report.entries_checked, report.objects_checked) == (2, 2, 2)
    assert report.bytes_hashed == sum(info.size for info in medium.list(OBJECTS_PREFIX))
    assert seen[-1] == (report.bytes_hashed, report.bytes_hashed)
    assert store.verify(repair=True).ok
    assert medium.head(LEASE_KEY) is None  # the repair's lease is released


def test_a_damaged_object_is_found_deleted_and_its_entry_is_a_miss(
    medium: ObjectStoreMedium,
) -> None:
    store = RemoteStore(medium)
    object_id = two_entries(store)
    info = medium.head(object_key(object_id))
    assert info is not None
    size = info.size
    medium.replace(object_key(object_id), os.urandom(size))  # same size, other bytes
    report = RemoteStore(medium).verify()
    assert kinds(report) == ["damaged object", "dangling entry"]
    assert all(problem.action == "" for problem in report.problems)
    assert medium.head(object_key(object_id)) is not None  # without repair nothing changes
    repaired = RemoteStore(medium).verify(repair=True)
    assert kinds(repaired) == ["damaged object", "dangling entry"]
    assert repaired.problems[0].action.startswith("deleted")
    assert medium.head(object_key(object_id)) is None
    assert RemoteStore(medium).verify().ok
    assert RemoteStore(medium).get(KEY) is None  # a miss, never a wrong value
    assert RemoteStore(medium).get(OTHER) is not None
    # A later put stores the object again, and its entry is a hit.
    again = RemoteStore(medium)
    again.put(Entry(KEY, {"variables": {"a": np.arange(50_000), "n": 1}}))
    assert again.objects.uploaded_bytes == size
    hit = RemoteStore(medium).get(KEY)
    assert hit is not None and np.array_equal(hit.variables["a"], np.arange(50_000))
    assert RemoteStore(medium).verify().ok


def test_a_truncated_segment_is_moved_aside_not_dropped(medium: ObjectStoreMedium) -> None:
    store = RemoteStore(medium)
    two_entries(store)
    segments = sorted(info.key for info in medium.list(SEGMENTS_PREFIX))
    whole = medium.read(segments[1])
    medium.replace(segments[1], whole[:-7])
    report = RemoteStore(medium).verify()
    assert kinds(report) == ["torn segment"]
    assert report.problems[0].path == segments[1]
    repaired = RemoteStore(medium).verify(repair=True)
    assert repaired.problems[0].action == f"moved to {QUARANTINE_PREFIX}{segments[1]}"
    assert medium.head(segments[1]) is None
    assert medium.read(QUARANTINE_PREFIX + segments[1]) == whole[:-7]
    # Its entry's object is now unreferenced (a cleanup's business), not a finding.
    assert RemoteStore(medium).verify().ok
    assert RemoteStore(medium).get(OTHER) is None and RemoteStore(medium).get(KEY) is not None


def test_a_segment_that_does_not_decode_is_damaged(medium: ObjectStoreMedium) -> None:
    store = RemoteStore(medium)
    two_entries(store)
    key = sorted(info.key for info in medium.list(SEGMENTS_PREFIX))[0]
    data = bytearray(medium.read(key))
    data[len(data) // 2] ^= 0xFF  # inside a record: its checksum no longer matches
    medium.replace(key, bytes(data))
    assert kinds(RemoteStore(medium).verify()) == ["damaged segment"]
    assert RemoteStore(medium).verify(repair=True).problems[0].action.startswith("moved to")
    assert RemoteStore(medium).verify().ok


def test_a_missing_object_leaves_a_dangling_entry_that_repair_tombstones(
    medium: ObjectStoreMedium,
) -> None:
    store = RemoteStore(medium)
    object_id = two_entries(store)
    medium.delete(object_key(object_id))
    report = RemoteStore(medium).verify()
    assert kinds(report) == ["dangling entry"]
    assert object_id in report.problems[0].detail and "missing" in report.problems[0].detail
    repaired = RemoteStore(medium).verify(repair=True)
    assert repaired.problems[0].action.startswith("tombstoned")
    assert RemoteStore(medium).verify().ok
    assert RemoteStore(medium).get(KEY) is None


def test_nothing_is_repaired_while_another_machine_holds_the_lease(
    medium: ObjectStoreMedium,
) -> None:
    store = RemoteStore(medium)
    object_id = two_entries(store)
    medium.replace(object_key(object_id), b"other bytes")
    assert take_lease(medium, "another-machine", 600.0)
    report = RemoteStore(medium).verify(repair=True)
    assert report.skipped and "lease" in report.skipped[0]
    assert kinds(report) == ["damaged object", "dangling entry"]
    assert all(problem.action == "" for problem in report.problems)
    assert medium.head(object_key(object_id)) is not None
    assert medium.head(LEASE_KEY) is not None  # still the other machine's
    release_lease(medium, "another-machine")
    assert RemoteStore(medium).verify(repair=True).skipped == []
    assert RemoteStore(medium).verify().ok


def test_a_leftover_lease_and_unknown_keys_are_reported(medium: ObjectStoreMedium) -> None:
    RemoteStore(medium).put(Entry(KEY, {"variables": {"n": 1}}))
    medium.put_once(LEASE_KEY, (pack({"holder": "crashed", "until": time.time() - 1}),))
    medium.put_once("stray/notes.txt", (b"hello",))
    medium.put_once(OBJECTS_PREFIX + "not-an-object", (b"x",))
    medium.put_once(OBJECTS_PREFIX + "ab/not-hex", (b"x",))  # never hashed nor deleted
    obstore.put(medium.store, "log/a b.log", b"x")  # a name no medium call accepts
    report = RemoteStore(medium).verify()
    assert kinds(report) == ["leftover lease"] + ["unknown key"] * 4
    repaired = RemoteStore(medium).verify(repair=True)
    assert medium.head(LEASE_KEY) is None  # replaced by the repair's, then released
    assert medium.head("stray/notes.txt") is not None  # never deleted: not the store's
    assert medium.head(OBJECTS_PREFIX + "ab/not-hex") is not None
    assert kinds(RemoteStore(medium).verify()) == ["unknown key"] * 4
    assert [p.action for p in repaired.problems if p.kind == "unknown key"] == [
        "left alone (the prefix may hold other data)"
    ] * 4


def test_objects_are_hashed_in_ranges(
    medium: ObjectStoreMedium, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_verify, "HASH_CHUNK", 4096)
    store = RemoteStore(medium)
    object_id = two_entries(store)
    assert store.verify().ok  # in 98 ranges, the last one short
    key = object_key(object_id)
    data = bytearray(medium.read(key))
    data[-1] ^= 1  # in the last range only
    medium.replace(key, bytes(data))
    assert kinds(store.verify()) == ["damaged object", "dangling entry"]


def test_the_cli_verifies_a_remote_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], s3: S3Server
) -> None:
    url = s3.url(f"cli-{os.urandom(4).hex()}")
    FsPersistentStore(tmp_path / "a").put(Entry(KEY, {"variables": {}}))
    remote = RemoteStore(url)
    object_id = two_entries(remote)
    argv = ["--json", "--store", str(tmp_path / "a"), "verify", "--remote", url]
    assert main(argv) == 0
    clean = json.loads(capsys.readouterr().out)
    assert (clean["ok"], clean["objects_checked"], clean["segments_checked"]) == (True, 2, 2)
    remote.medium.delete(object_key(object_id))
    assert main(argv) == 1
    found = json.loads(capsys.readouterr().out)
    assert [p["kind"] for p in found["problems"]] == ["dangling entry"]
    assert main([*argv, "--repair"]) == 1
    repaired = json.loads(capsys.readouterr().out)
    assert repaired["repaired"] and repaired["problems"][0]["action"].startswith("tombstoned")
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == []
