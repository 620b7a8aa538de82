"""`marimo-store push`, `pull`, `info --remote` and `cleanup --remote`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from marimo_store import Entry, ExecutionKey, FsPersistentStore
from marimo_store.cli import main
from marimo_store.remote import RemoteStore


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["--json", *argv]) == 0
    document: dict[str, object] = json.loads(capsys.readouterr().out)
    return document


def test_push_pull_info_and_cleanup_of_a_remote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = (tmp_path / "bucket").as_uri()
    with FsPersistentStore(tmp_path / "a") as a:
        for n in range(3):
            a.put(Entry(ExecutionKey(f"b{n}", "m"), {"variables": {"x": np.full(20_000, n)}}))
    pushed = run(capsys, "--store", str(tmp_path / "a"), "push", "--remote", bucket)
    assert (pushed["copied"], pushed["already_there"]) == (3, 0)
    assert pushed["uploaded_object_bytes"] == 3 * 160_000
    again = run(capsys, "--store", str(tmp_path / "a"), "push", "--remote", bucket)
    assert (again["copied"], again["already_there"]) == (0, 3)
    FsPersistentStore(tmp_path / "b").put(Entry(ExecutionKey("b9", "m"), {"variables": {}}))
    pulled = run(capsys, "--store", str(tmp_path / "b"), "pull", "--remote", bucket)
    assert pulled["copied"] == 3
    hit = FsPersistentStore(tmp_path / "b").get(ExecutionKey("b2", "m"))
    assert hit is not None and np.array_equal(hit.variables["x"], np.full(20_000, 2))
    info = run(capsys, "--store", str(tmp_path / "a"), "info", "--remote", bucket)
    assert (info["entries"], info["segments"], info["objects"]) == (3, 3, 3)
    RemoteStore(bucket).delete_entries([ExecutionKey("b0", "m")])
    # The grace is the store's object_grace_seconds (an hour): nothing is old enough yet.
    cleaned = run(capsys, "--store", str(tmp_path / "a"), "cleanup", "--remote", bucket)
    assert (cleaned["busy"], cleaned["deleted"], cleaned["kept"]) == (False, 0, 1)
    assert cleaned["segments_merged"] == 4  # three puts and a delete


def test_without_a_remote_the_commands_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    FsPersistentStore(tmp_path / "a").put(Entry(ExecutionKey("b", "m"), {"variables": {}}))
    assert main(["--store", str(tmp_path / "a"), "push"]) == 2
    assert "no remote" in capsys.readouterr().err
