"""Symlinks planted in a store folder never carry a write outside it.

Git carries symlinks, and so does every tool that copies a folder; whoever
writes a shared store can plant one at any path the layout names. Each
test plants one (at a file or at a directory of the layout) pointing at a
tripwire outside the store: a file whose bytes, mode and mtime are compared
before and after, and an empty directory in which nothing may appear. Then
it runs everything a store, its maintenance and its CLI do: puts (a 5 MiB
value, so the verification ledger is appended to; the same value again, so
an object is reused and touched; small values), gets, a cached call,
`cleanup(include_content=True)`, `verify`, `doctor`, `verify(repair=True)`
and the CLI commands, and checks the tripwire, that nothing raised but a
`StoreError`, and that after the repair the link is gone and the store
works.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from _hostile import CLI_COMMANDS, T0, Tripwire, environment, run_cli

from marimo_store import Entry, ExecutionKey, FsPersistentStore, StoreError, persistent_cache
from marimo_store._hashed_objects import ledger_name

BIG = np.arange(5 * 1024 * 1024 // 8, dtype=np.float64)  # 5 MiB: an object the ledger records
KEY = ExecutionKey("block", "module", T0)


def square(x: int) -> int:
    return x * x


def quiet_store(path: Path) -> FsPersistentStore:
    return FsPersistentStore(path, cleanup_on_exit=False, entry_merge_timeout_seconds=10**9)


def build(path: Path) -> str:
    """A store with a big and a small entry, a snapshot, and a cached call;
    returns the id of the big value's object file."""
    store = quiet_store(path)
    store.put(Entry.of(KEY, {"big": BIG, "small": 1}))
    persistent_cache(store=store)(square)(3)
    store.close()
    store.cleanup()
    objects = sorted(p for p in (path / "objects").glob("??/*") if p.stat().st_size > 4 << 20)
    return objects[0].parent.name + objects[0].name


def _link(place: Path, target: Path) -> None:
    if place.is_dir() and not place.is_symlink():
        for child in sorted(place.rglob("*"), reverse=True):
            child.unlink() if not child.is_dir() or child.is_symlink() else child.rmdir()
        place.rmdir()
    elif place.exists() or place.is_symlink():
        place.unlink()
    place.parent.mkdir(parents=True, exist_ok=True)
    place.symlink_to(target, target_is_directory=target.is_dir())


def _ledger(path: Path, object_id: str) -> Path:
    name = ledger_name()
    assert name is not None, "this machine has a boot id (Linux)"
    return path / "local" / name


# place -> (path of the link in the store, target: "file", "dir", "missing" or
# "twin" (a file outside with the same bytes))
PLACES: dict[str, tuple[Callable[[Path, str], Path], str]] = {
    "local/<ledger>": (_ledger, "file"),
    "local/<ledger> (dangling)": (_ledger, "missing"),
    "local/": (lambda p, _: p / "local", "dir"),
    "locks/objects.lock": (lambda p, _: p / "locks" / "objects.lock", "file"),
    "locks/modification.lock": (lambda p, _: p / "locks" / "modification.lock", "missing"),
    "locks/": (lambda p, _: p / "locks", "dir"),
    "objects/<xx>/ (every fan-out)": (lambda p, _: p / "objects" / "*", "dir"),
    "objects/<xx>/<object>": (lambda p, i: p / "objects" / i[:2] / i[2:], "twin"),
    "objects/": (lambda p, _: p / "objects", "dir"),
    "log/": (lambda p, _: p / "log", "dir"),
    "snapshots/": (lambda p, _: p / "snapshots", "dir"),
    "tmp/": (lambda p, _: p / "tmp", "dir"),
    "quarantine/": (lambda p, _: p / "quarantine", "dir"),
    "format.json": (lambda p, _: p / "format.json", "file"),
    ".gitignore": (lambda p, _: p / ".gitignore", "file"),
    ".gitattributes (dangling)": (lambda p, _: p / ".gitattributes", "missing"),
}


def plant(path: Path, object_id: str, place: str, tripwire: Tripwire) -> list[Path]:
    locate, kind = PLACES[place]
    where = locate(path, object_id)
    if kind == "twin":  # the object's own bytes outside: a reuse would touch its mtime
        target = tripwire.add_file("twin", where.read_bytes())
    else:
        target = {"file": tripwire.file, "dir": tripwire.empty, "missing": tripwire.missing()}[kind]
    every_fan_out = [where.parent / f"{i:02x}" for i in range(256)]
    links = every_fan_out if where.name == "*" else [where]
    for link in links:
        _link(link, target)
    return links


def exercise(path: Path) -> None:
    """Everything a user, a cached function and maintenance do; only
    `StoreError`s may come out (a put may refuse to write through a link)."""
    store = quiet_store(path)
    for operation in (
        lambda: store.put(Entry.of(KEY.at(T0 + 1), {"big": BIG})),  # the same object again
        lambda: store.put(Entry.of(KEY.at(T0 + 2), {"big": BIG + 1, "s": "x"})),  # a new one
        lambda: store.put(Entry.of(KEY.at(T0 + 3), {"small": 2})),
        lambda: store.get(KEY),
        lambda: store.get(KEY.at(T0), exact_match_created_at=True),
        lambda: persistent_cache(store=store)(square)(3),
        lambda: persistent_cache(store=store)(square)(4),
        lambda: store.cleanup(include_content=True),
        store.verify,
        store.doctor,
        store.close,
    ):
        with contextlib.suppress(StoreError):
            operation()
    for command in CLI_COMMANDS:
        if command != ("verify", "--repair"):
            code, _, stderr = run_cli("--store", str(path), *command)
            assert code in (0, 1, 2), (command, code)
            assert "Traceback" not in stderr


@pytest.mark.parametrize("place", sorted(PLACES))
def test_a_planted_symlink_never_carries_a_write_outside(place: str, tmp_path: Path) -> None:
    tripwire = Tripwire(tmp_path)
    path = tmp_path / "store"
    with environment(tmp_path / "home"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        object_id = build(path)
        links = plant(path, object_id, place, tripwire)
        exercise(path)
        tripwire.check()

        store = quiet_store(path)
        report = store.verify()
        found = {problem.path for problem in report.problems if problem.kind == "symlink"}
        remaining = {str(link) for link in links if link.is_symlink()}  # others were replaced
        assert remaining <= found
        store.verify(repair=True)
        tripwire.check()
        for link in links:
            assert not link.is_symlink()
        assert not [p for p in store.verify().problems if p.kind == "symlink"]
        store.put(Entry.of(KEY.at(T0 + 9), {"big": BIG, "after": True}))
        found_entry = store.get(KEY.at(T0 + 9), exact_match_created_at=True)
        assert found_entry is not None
        assert np.array_equal(found_entry.variables["big"], BIG)
        store.close()
        store.cleanup(include_content=True)
    tripwire.check()


def test_the_store_root_itself_may_be_a_symlink(tmp_path: Path) -> None:
    """The user's choice: a store kept elsewhere and linked into a project."""
    real = tmp_path / "real-store"
    real.mkdir()
    link = tmp_path / "project-store"
    link.symlink_to(real, target_is_directory=True)
    with environment(tmp_path / "home"), warnings.catch_warnings():
        warnings.simplefilter("error")  # no damage reported: nothing is wrong
        store = quiet_store(link)
        store.put(Entry.of(KEY, {"big": BIG}))
        store.close()
        store.cleanup(include_content=True)
        assert not store.verify().problems
        again = quiet_store(link)
        found = again.get(KEY)
        assert found is not None
        assert np.array_equal(found.variables["big"], BIG)
        again.close()
    assert (real / "format.json").is_file()


def test_the_installed_cli_never_writes_through_a_link(tmp_path: Path) -> None:
    """The console script, as users run it, on a store whose `tmp/`,
    `snapshots/` and `locks/` are symlinks out of it."""
    tripwire = Tripwire(tmp_path)
    path = tmp_path / "store"
    with environment(tmp_path / "home"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        object_id = build(path)
        for place in ("tmp/", "snapshots/", "locks/"):
            plant(path, object_id, place, tripwire)
    script = Path(sys.executable).with_name("marimo-store")
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "x")}
    for command in [*CLI_COMMANDS, ("verify",)]:
        result = subprocess.run(
            [str(script), "--store", str(path), *command],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )
        assert result.returncode in (0, 1, 2), (command, result.stderr)
        assert "Traceback" not in result.stderr
        tripwire.check()
    assert result.returncode == 0, result.stdout  # the last verify: repaired, nothing left
    assert not (path / "tmp").is_symlink()
