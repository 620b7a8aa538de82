"""A store writes only into a directory of its own (issue 15, point 7).

`FsPersistentStore("")` would make the working directory a store, and a
store opened on a project root would write `.gitignore` and `.gitattributes`
(`* binary`) that govern the whole project. Both are refused; with
`allow_other_files=True` the store works there but leaves those files alone,
which real git confirms.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from marimo_store import ConfigError, Entry, ExecutionKey, FsPersistentStore

KEY = ExecutionKey("block", "inputs")
PROJECT_FILES = {
    "README.md": "# my project\n",
    "analysis.py": "print('hello')\n",
    ".gitignore": "*.pyc\n",
    ".gitattributes": "*.py text eol=lf\n",
}


def make_project(root: Path) -> dict[str, bytes]:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in PROJECT_FILES.items():
        (root / name).write_text(text)
    return {path.name: path.read_bytes() for path in root.iterdir()}


def test_an_empty_path_is_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="must not be empty"):
        FsPersistentStore("")
    assert list(tmp_path.iterdir()) == []


def test_a_directory_of_other_files_is_refused_with_the_opt_in_named(tmp_path: Path) -> None:
    project = tmp_path / "project"
    before = make_project(project)
    with pytest.raises(ConfigError) as caught:
        FsPersistentStore(project)
    message = str(caught.value)
    assert "is not a marimo_store store" in message
    assert "README.md" in message
    assert "allow_other_files=True" in message
    assert {path.name: path.read_bytes() for path in project.iterdir()} == before


def test_a_regular_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a directory")
    with pytest.raises(ConfigError, match="is not a directory"):
        FsPersistentStore(path)
    assert path.read_text() == "not a directory"


@pytest.mark.parametrize("present", [(), (".DS_Store",)], ids=["empty", "finder-litter"])
def test_a_missing_or_empty_directory_becomes_a_store(tmp_path: Path, present: tuple[str]) -> None:
    (tmp_path / "a").mkdir()
    for name in present:
        (tmp_path / "a" / name).write_bytes(b"\0")
    for path in (tmp_path / "a", tmp_path / "b" / "c"):
        store = FsPersistentStore(path)
        store.put(Entry.of(KEY, {"x": 1}))
        store.close()
        assert (path / ".gitattributes").read_text().endswith("* binary\n")
        assert (path / ".gitignore").is_file()


def test_an_existing_store_opens_even_with_a_file_added_to_it(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = FsPersistentStore(path)
    store.put(Entry.of(KEY, {"x": 1}))
    store.close()
    (path / "NOTES.txt").write_text("what this store is for\n")
    reopened = FsPersistentStore(path)
    assert reopened.load_variable(KEY, "x") == 1
    reopened.close()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_with_the_opt_in_the_projects_git_files_stay_untouched(tmp_path: Path) -> None:
    project = tmp_path / "project"
    before = make_project(project)
    (project / ".gitignore").unlink()  # a project without one: none is created either
    del before[".gitignore"]
    git = ["git", "-C", str(project)]
    subprocess.run([*git, "init", "-q"], check=True)
    store = FsPersistentStore(project, allow_other_files=True)
    store.put(Entry.of(KEY, {"x": [1, 2, 3]}))
    store.close()
    report = FsPersistentStore(project, allow_other_files=True).verify(repair=True)
    assert report.problems == [], report.problems  # the project's git files are not the store's
    assert not (project / ".gitignore").exists()
    for name, data in before.items():
        assert (project / name).read_bytes() == data, name
    # git still sees the project's text as text: no `* binary` reached it.
    attributes = subprocess.run(
        [*git, "check-attr", "binary", "diff", "--", "analysis.py", "README.md"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "set" not in attributes.replace("unspecified", ""), attributes
    assert FsPersistentStore(project, allow_other_files=True).load_variable(KEY, "x") == [1, 2, 3]


@pytest.mark.parametrize("delivered", ["whole", "prefix", "zeros"])
def test_a_replica_holding_only_the_stores_gitignore_is_a_store_with_nothing_to_do(
    tmp_path: Path, delivered: str
) -> None:
    """A sync tool may deliver the store's generated `.gitignore` before any
    other file, and in two steps (a prefix, or a placeholder of zeros, first):
    maintenance of a store opened there has nothing to do yet (it must not
    call the folder someone else's; found by the sync simulator, seed 28699)."""
    source = FsPersistentStore(tmp_path / "source", cleanup_on_exit=False)
    source.put(Entry.of(ExecutionKey("b", "m"), {"v": 1}))
    source.close()
    replica = tmp_path / "replica"
    replica.mkdir()
    generated = (tmp_path / "source" / ".gitignore").read_bytes()
    store = FsPersistentStore(replica, cleanup_on_exit=False)
    arrived = {"whole": generated, "prefix": generated[:5], "zeros": bytes(len(generated))}
    (replica / ".gitignore").write_bytes(arrived[delivered])
    assert store.cleanup().dropped == []
    problems = store.verify().problems  # a half-delivered file is what it is now
    assert [p.kind for p in problems] in ([], ["incomplete .gitignore"], ["damaged .gitignore"])
    assert (problems == []) == (delivered == "whole")
    assert (replica / ".gitignore").read_bytes() == arrived[delivered]
    store.close()


@pytest.mark.parametrize(
    "copies",
    [
        # Syncthing's copy of its own copy (sync simulator, seed 20851)
        (
            ".gitignore.sync-conflict-20261121-101500-REPLICA.sync-conflict-20261121-101500-REPLICA",
            "format.sync-conflict-20261121-101500-REPLICA.sync-conflict-20261121-101500-REPLICA.json",
        ),
        (
            "format (laptop's conflicted copy 2026-11-21) "
            "(laptop's conflicted copy 2026-11-21).json",
        ),
    ],
)
def test_a_replica_holding_only_copies_of_copies_of_store_files_opens(
    tmp_path: Path, copies: tuple[str, ...]
) -> None:
    """A sync tool may copy its own conflicted copy again before the store's
    files arrive: those are still the store's files, not someone else's."""
    replica = tmp_path / "replica"
    replica.mkdir()
    for name in copies:
        (replica / name).write_bytes(b"{}")
    store = FsPersistentStore(replica, cleanup_on_exit=False)
    store.put(Entry.of(ExecutionKey("b", "m"), {"v": 1}))
    assert store.cleanup().dropped == []
    store.close()
    project = tmp_path / "project"  # the same copies beside someone's file: not a store
    project.mkdir()
    for name in (*copies, "README.md"):
        (project / name).write_bytes(b"{}")
    with pytest.raises(ConfigError, match=r"README\.md"):
        FsPersistentStore(project, cleanup_on_exit=False)
