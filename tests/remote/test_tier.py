"""`FsPersistentStore(path, remote=...)`: a local store in front of a remote.

Read-through (a remote hit is copied to the local tier), write-through and
write-back (queued, flushed by `close()`), the `remote` key of
`.marimo.toml`, and a remote that is down or stalled: a bounded wait, a
warning and a miss, never an error from `get` or a lost local put.
"""

from __future__ import annotations

import socket
import time
import warnings
from pathlib import Path

import pytest

from marimo_store import ConfigError, Entry, ExecutionKey, FsPersistentStore, Store, TieredStore
from marimo_store.config import read_settings
from marimo_store.remote import RemoteStore

KEY = ExecutionKey("block", "module")


def test_read_through_copies_a_remote_hit_to_the_local_tier(remote: str, tmp_path: Path) -> None:
    with FsPersistentStore(tmp_path / "a", remote=remote) as a:
        stored = a.put(Entry(KEY, {"variables": {"x": 41, "blob": b"z" * 100_000}}))
        a.save("model", {"w": [1, 2]})
    with FsPersistentStore(tmp_path / "b", remote=remote) as b:
        hit = b.get(KEY)
        assert hit is not None and hit.key == stored.key and hit.variables["x"] == 41
        assert b.load("model") == {"w": [1, 2]}
        assert b.load_variable(KEY, "x") == 41
    local_only = FsPersistentStore(tmp_path / "b")
    copied = local_only.get(KEY, exact_match_created_at=False)
    assert copied is not None and copied.key == stored.key
    assert copied.variables["blob"] == b"z" * 100_000
    local_only.close()


def test_write_back_queues_and_close_flushes(remote: str, tmp_path: Path) -> None:
    store = FsPersistentStore(tmp_path / "a", remote=remote, remote_write="back")
    for n in range(5):
        store.put(Entry(ExecutionKey(f"b{n}", "m"), {"variables": {"n": n}}))
    store.close()
    assert len(RemoteStore(remote).entries()) == 5


def test_the_remote_key_of_a_project_file(tmp_path: Path, home: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    bucket = (tmp_path / "bucket").as_uri()
    (project / ".marimo.toml").write_text(
        f'[fs_persister.defaults]\ndir_path = "cache"\nremote = "{bucket}"\n'
    )
    settings = read_settings(str(project))
    assert settings.store_options["remote"] == bucket
    with settings.open_store(str(project / "default")) as store:
        store.put(Entry(KEY, {"variables": {"x": 1}}))
    assert RemoteStore(bucket).get(KEY) is not None


@pytest.mark.parametrize(
    "url", ["s3://user:secret@bucket/x", "s3://bucket/x?access_key_id=a", "bucket", "s3://"]
)
def test_credentials_never_come_from_the_remote_option(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        FsPersistentStore(tmp_path / "a", remote=url)


def test_a_stalled_remote_costs_a_bounded_wait_and_a_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        for name, value in {
            "AWS_ENDPOINT": endpoint,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        store = FsPersistentStore(
            tmp_path / "a", remote="s3://stalled-bucket/x", remote_timeout=0.5
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            began = time.monotonic()
            assert store.get(KEY) is None
            first = time.monotonic() - began
            began = time.monotonic()
            for _ in range(20):
                assert store.get(KEY) is None
            later = time.monotonic() - began
        assert first < 2.0 and later < 0.5
        assert any("no answer in time" in str(w.message) for w in caught)


def test_a_remote_store_is_a_tier_of_a_tiered_store(remote: str, tmp_path: Path) -> None:
    RemoteStore(remote).put(Entry(KEY, {"variables": {"x": 5}}))
    tiered = TieredStore([FsPersistentStore(tmp_path / "local"), RemoteStore(remote)])
    assert isinstance(tiered.tiers[1], Store)
    hit = tiered.get(KEY)
    assert hit is not None and hit.variables["x"] == 5
    assert FsPersistentStore(tmp_path / "local").get(KEY) is not None  # filled on hit


def test_a_deleted_entry_is_deleted_on_the_remote_too(remote: str, tmp_path: Path) -> None:
    with FsPersistentStore(tmp_path / "a", remote=remote, remote_write="back") as a:
        a.put(Entry(KEY, {"variables": {"x": 1}}))
        assert a.delete_entries([KEY]) == 1
        assert a.get(KEY) is None  # not brought back from the remote
    assert RemoteStore(remote).get(KEY) is None
    assert FsPersistentStore(tmp_path / "b", remote=remote).get(KEY) is None
