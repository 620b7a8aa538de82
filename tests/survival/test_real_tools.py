"""A store committed to git and copied with rsync: the real tools, real files.

- git: two clones add different entries and clean up, then merge: git
  never reports a conflict (every name is a writer's own or a content
  hash, and a cleanup in a git work tree retires files instead of deleting
  them, so git's rename detection has nothing to pair), and the merged
  store holds every entry; an old commit checked out opens to the old state
  (git sets every mtime to "now" on checkout). Two clones that put and
  clean up (with object GC) and pull, round after round (`--git-rounds N`,
  default 20), never conflict.
- rsync: `rsync -a` and `rsync -r` (no times, no permissions) round trips,
  with new entries and a cleanup on the far side, and with `--delete`.

.ci/run installs git and rsync when they are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest

from marimo_store import (
    DefaultCleanupStrategy,
    Entry,
    ExecutionKey,
    FsPersistentStore,
    StoreWarning,
)
from marimo_store._retired import is_marker

KEEP_ALL = DefaultCleanupStrategy(max_entries_per_block=None, max_entries_per_module=None)
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "marimo_store tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "marimo_store tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: .ci/run installs it (apt-get install {name})"
    return path


def run(*command: str, cwd: Path) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr)
    return result.stdout


def value_of(name: str) -> dict[str, Any]:
    return {"name": name, "big": f"{name};" * 500}  # an object file each


def put_all(root: Path, names: list[str], *, clean: bool = True) -> None:
    store = FsPersistentStore(root, cleanup_strategy=KEEP_ALL, cleanup_on_exit=False)
    for name in names:
        store.put(Entry.of(ExecutionKey(name, "m"), value_of(name)))
    store.close()  # seals its segment: the cleanup may delete it
    if clean:
        assert store.cleanup().skipped == []


def loads_exactly(root: Path, names: list[str], absent: tuple[str, ...] = ()) -> None:
    store = FsPersistentStore(root, cleanup_on_exit=False)
    for name in names:
        entry = store.get(ExecutionKey(name, "m"))
        assert entry is not None, name
        assert dict(entry.variables) == value_of(name), name
    for name in absent:
        assert store.get(ExecutionKey(name, "m")) is None, name
    assert {m.key.block_id for m in store.entries()} == set(names)
    assert store.verify().problems == []
    store.close()


def is_marker_file(path: Path) -> bool:
    """A marker a cleanup in a git work tree left where it retired a file
    (marimo_store/_retired.py)."""
    return is_marker(path.read_bytes())


def snapshots(root: Path) -> list[Path]:
    """The snapshots of a store, not counting retired ones."""
    return [p for p in (root / "snapshots").glob("*.snap") if not is_marker_file(p)]


def test_git_clones_merge_without_conflicts(tmp_path: Path) -> None:
    git = tool("git")
    origin = tmp_path / "origin"
    origin.mkdir()
    run(git, "init", "-q", "-b", "main", cwd=origin)
    put_all(origin / "cache", ["a0", "a1", "a2"])
    run(git, "add", "-A", cwd=origin)
    run(git, "commit", "-q", "-m", "store with a snapshot", cwd=origin)
    assert run(git, "status", "--porcelain", cwd=origin) == ""
    tracked = run(git, "ls-files", cwd=origin).split()
    assert "cache/format.json" in tracked
    assert not [p for p in tracked if p.startswith(("cache/tmp/", "cache/locks/"))]
    attributes = run(
        git, "check-attr", "diff", "merge", "text", "--", "cache/format.json", cwd=origin
    )
    assert attributes.count(": unset") == 3, attributes  # `* binary`: never merged or diffed

    clones = {}
    for name in ("b", "c"):
        clones[name] = tmp_path / name
        run(git, "clone", "-q", str(origin), str(clones[name]), cwd=tmp_path)
    put_all(clones["b"] / "cache", ["b0", "b1"])
    put_all(clones["c"] / "cache", ["c0", "c1", "c2"])
    for name, clone in clones.items():
        run(git, "add", "-A", cwd=clone)
        run(git, "commit", "-q", "-m", f"entries of {name}", cwd=clone)
    first = clones["b"]
    run(git, "pull", "-q", "--no-rebase", "--no-edit", str(clones["c"]), "main", cwd=first)
    assert run(git, "ls-files", "-u", cwd=first) == ""  # no conflicted paths
    assert run(git, "status", "--porcelain", cwd=first) == ""
    assert len(snapshots(first / "cache")) == 2  # two heads
    everything = ["a0", "a1", "a2", "b0", "b1", "c0", "c1", "c2"]
    loads_exactly(first / "cache", everything)

    # The merged store cleans up into one snapshot, which commits cleanly.
    store = FsPersistentStore(first / "cache", cleanup_strategy=KEEP_ALL, cleanup_on_exit=False)
    assert store.cleanup().skipped == []
    assert len(snapshots(first / "cache")) == 1
    run(git, "add", "-A", cwd=first)
    run(git, "commit", "-q", "-m", "cleaned up", cwd=first)
    loads_exactly(first / "cache", everything)

    # An old commit checked out (every file's mtime is now "now") opens to the old state.
    run(git, "checkout", "-q", "HEAD~2", cwd=first)
    loads_exactly(first / "cache", ["a0", "a1", "a2", "b0", "b1"], absent=("c0",))
    run(git, "checkout", "-q", "main", cwd=first)
    loads_exactly(first / "cache", everything)


@pytest.mark.parametrize("flags", [["-a"], ["-r"]], ids=["rsync -a", "rsync -r"])
def test_rsync_round_trips(tmp_path: Path, flags: list[str]) -> None:
    rsync = tool("rsync")
    here, there = tmp_path / "here", tmp_path / "there"
    put_all(here, ["h0", "h1"])
    put_all(here, ["h2"], clean=False)  # and an entry only in the log
    run(rsync, *flags, f"{here}/", f"{there}/", cwd=tmp_path)
    loads_exactly(there, ["h0", "h1", "h2"])

    # New entries and a cleanup over there (deleting what came from here),
    # then back, without --delete: here keeps its old files beside the new.
    put_all(there, ["t0", "t1"])
    run(rsync, *flags, f"{there}/", f"{here}/", cwd=tmp_path)
    loads_exactly(here, ["h0", "h1", "h2", "t0", "t1"])
    assert len(list((here / "snapshots").glob("*.snap"))) == 2  # the old one is an ancestor

    # A store instance kept open over here sees what arrives later.
    watcher = FsPersistentStore(here, refresh_interval=0, cleanup_on_exit=False)
    assert watcher.get(ExecutionKey("t2", "m")) is None
    put_all(there, ["t2"])
    run(rsync, *flags, "--delete", f"{there}/", f"{here}/", cwd=tmp_path)
    entry = watcher.get(ExecutionKey("t2", "m"))
    assert entry is not None and dict(entry.variables) == value_of("t2")
    loads_exactly(here, ["h0", "h1", "h2", "t0", "t1", "t2"])
    assert len(list((here / "snapshots").glob("*.snap"))) == 1  # --delete mirrors


def test_git_clones_that_clean_up_merge_without_conflicts_round_after_round(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two clones each put, clean up several times (some with object GC)
    and `git pull` with default settings, round after round: git never
    reports a conflict (a cleanup retires files instead of deleting them,
    docs/sync.md), and the merged store opens complete."""
    git = tool("git")
    origin = tmp_path / "origin.git"
    run(git, "init", "-q", "--bare", "-b", "main", str(origin), cwd=tmp_path)
    clones = [tmp_path / "b", tmp_path / "c"]
    for clone in clones:
        run(git, "clone", "-q", str(origin), str(clone), cwd=tmp_path)
    put_all(clones[0] / "cache", [f"base{i}" for i in range(30)])  # similar snapshots
    run(git, "add", "-A", cwd=clones[0])
    run(git, "commit", "-q", "-m", "base", cwd=clones[0])
    run(git, "push", "-q", "origin", "HEAD:main", cwd=clones[0])
    run(git, "pull", "-q", "--no-rebase", "origin", "main", cwd=clones[1])
    stored = [f"base{i}" for i in range(30)]
    rounds = request.config.getoption("--git-rounds")
    for round_number in range(rounds):
        for side, clone in enumerate(clones):
            store = FsPersistentStore(
                clone / "cache",
                cleanup_strategy=KEEP_ALL,
                cleanup_on_exit=False,
                object_grace_seconds=0,
            )
            for step in range(3):
                name = f"r{round_number}s{side}n{step}"
                store.put(Entry.of(ExecutionKey(name, "m"), value_of(name)))
                stored.append(name)
                store.close()
                assert store.cleanup(include_content=step % 2 == 1).skipped == []
            run(git, "add", "-A", cwd=clone)
            run(git, "commit", "-q", "-m", f"round {round_number} of {clone.name}", cwd=clone)
            run(git, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main", cwd=clone)
            assert run(git, "ls-files", "-u", cwd=clone) == ""  # no conflicted paths
            run(git, "push", "-q", "origin", "HEAD:main", cwd=clone)
    run(git, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main", cwd=clones[0])
    for clone in clones:
        assert run(git, "status", "--porcelain", cwd=clone) == ""
    markers = [p for p in (clones[0] / "cache").rglob("*") if p.is_file() and is_marker_file(p)]
    assert markers  # what the cleanups retired instead of deleting
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)  # a marker is absent, never damage
        loads_exactly(clones[0] / "cache", stored)
    print(f"git: {rounds} rounds, {len(stored)} entries, no conflict")
