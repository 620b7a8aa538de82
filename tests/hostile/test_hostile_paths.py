"""Files of the wrong kind, and store paths of the wrong kind.

- `format.json` (or a segment, a snapshot, an object, `.gitignore`, the
  ledger) as a FIFO, a directory, a symlink to a FIFO, or JSON nested 4000
  deep: opening the store, `get`, `put`, a cached call, cleanup, verify,
  doctor, repair and the CLI all finish (each runs in a process of its own
  under a timeout: a hang fails the test) and raise nothing but
  `StoreError`s.
- A store path that is a regular file, or a directory of something else:
  `cleanup`, `verify` and `doctor` raise `StoreFormatError`, and every CLI
  command exits 2 with one line on stderr, never a report of success; the
  file or directory is left exactly as it was.

Each test compares files outside the store (or the foreign path itself)
before and after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import workers
from _hostile import CLI_COMMANDS, Tripwire, environment

from marimo_store import ConfigError, Entry, ExecutionKey, FsPersistentStore, StoreFormatError
from marimo_store._hashed_objects import ledger_name

SCRIPT = Path(sys.executable).with_name("marimo-store")
KEY = ExecutionKey("block", "module", 1_700_000_000_000)
TIMEOUT = 120


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "xdg")}


def build(path: Path) -> str:
    """A store with an entry whose value is an object file; returns its path."""
    store = FsPersistentStore(path, cleanup_on_exit=False)
    store.put(Entry.of(KEY, {"v": "x" * 100_000}))
    store.close()
    store.cleanup()
    return str(next(p for p in (path / "objects").glob("??/*")))


def run_everything(path: Path, home: Path) -> str:
    """The worker and every CLI command on `path`, each under a timeout."""
    worker = subprocess.run(
        workers.script("hostile", str(path)),
        capture_output=True,
        text=True,
        env=workers.environment(_env(home)),
        timeout=TIMEOUT,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.endswith("done\n"), worker.stdout
    for command in CLI_COMMANDS:
        result = subprocess.run(
            [str(SCRIPT), "--store", str(path), *command],
            capture_output=True,
            text=True,
            env=_env(home),
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode in (0, 1, 2), (command, result.stderr)
        assert "Traceback" not in result.stderr
    return worker.stdout


def _fifo(place: Path, tripwire: Tripwire) -> None:
    os.mkfifo(place)


def _directory(place: Path, tripwire: Tripwire) -> None:
    place.mkdir()


def _link_to_fifo(place: Path, tripwire: Tripwire) -> None:
    fifo = tripwire.root / "a-fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    place.symlink_to(fifo)


def _deep(place: Path, tripwire: Tripwire) -> None:
    place.write_bytes(b"[" * 4000)


KINDS = {"fifo": _fifo, "directory": _directory, "link to a fifo": _link_to_fifo, "deep": _deep}
PLACES = ("format.json", "segment", "snapshot", "object", ".gitignore", "ledger")


def _place(path: Path, object_path: str, place: str) -> Path:
    if place == "format.json":
        return path / "format.json"
    if place == ".gitignore":
        return path / ".gitignore"
    if place == "segment":
        return path / "log" / "mallory-1-000000000000.0.log"
    if place == "snapshot":
        return path / "snapshots" / "0123456789abcdef0123456789abcdef.snap"
    if place == "ledger":
        return path / "local" / str(ledger_name())
    return Path(object_path)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("place", PLACES)
def test_a_file_of_the_wrong_kind_never_hangs_or_crashes(
    place: str, kind: str, tmp_path: Path
) -> None:
    tripwire = Tripwire(tmp_path)
    path = tmp_path / "store"
    home = tmp_path / "home"
    with environment(home), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        object_path = build(path)
    where = _place(path, object_path, place)
    if where.exists():
        where.unlink()
    where.parent.mkdir(parents=True, exist_ok=True)
    KINDS[kind](where, tripwire)
    tripwire.check()
    output = run_everything(path, home)
    assert "open: ok" in output
    if place == "object":
        assert "get: miss" in output  # its only object is gone: a miss, never a value
    tripwire.check()
    with environment(home), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = FsPersistentStore(path, cleanup_on_exit=False)  # opens, whatever is left
        store.close()


def test_deep_format_json_is_damaged_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.mkdir()
    (path / "format.json").write_bytes(b"[" * 4000)
    with pytest.warns(UserWarning, match="format.json is damaged"):
        store = FsPersistentStore(path, cleanup_on_exit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the put warns again, then rewrites it
        store.put(Entry.of(KEY, {"v": 1}))
        store.close()
    assert (path / "format.json").read_bytes().startswith(b'{"format": "marimo_store"')


# -- store paths of the wrong kind ----------------------------------------------------


def _snapshot_of(path: Path) -> dict[str, tuple[bytes, int]]:
    if path.is_file():
        return {str(path): (path.read_bytes(), path.stat().st_mtime_ns)}
    found = {str(path): (b"", path.stat().st_mtime_ns)}
    for item in sorted(path.rglob("*")):
        found[str(item)] = (item.read_bytes() if item.is_file() else b"", item.stat().st_mtime_ns)
    return found


def _foreign(tmp_path: Path, kind: str) -> Path:
    if kind == "regular file":
        path = tmp_path / "notes.txt"
        path.write_text("not a store\n")
    else:
        path = tmp_path / "photos"
        path.mkdir()
        (path / "holiday.jpg").write_bytes(b"\xff\xd8 a picture")
    old = 1_000_000_000
    os.utime(path, (old, old))
    return path


@pytest.mark.parametrize("kind", ["regular file", "directory of something else"])
def test_a_path_that_is_no_store_is_refused_or_left_alone(kind: str, tmp_path: Path) -> None:
    """Opening refuses it (`ConfigError`); a store opened with
    `allow_other_files` on a directory of other files has nothing to
    maintain yet, and changes none of them."""
    path = _foreign(tmp_path, kind)
    before = _snapshot_of(path)
    with environment(tmp_path / "home"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigError, match="directory"):
            FsPersistentStore(path, cleanup_on_exit=False)
        if kind == "directory of something else":
            store = FsPersistentStore(path, cleanup_on_exit=False, allow_other_files=True)
            assert store.cleanup().dropped == []
            assert store.verify(repair=True).problems == []
            store.doctor()
    assert _snapshot_of(path) == before


@pytest.mark.parametrize("kind", ["regular file", "directory of something else"])
def test_maintenance_of_a_store_path_replaced_after_opening_fails(
    kind: str, tmp_path: Path
) -> None:
    """A store whose directory became a file, or someone else's folder,
    after it was opened: cleanup, verify and doctor refuse to work on it."""
    path = tmp_path / "store"
    with environment(tmp_path / "home"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = FsPersistentStore(path, cleanup_on_exit=False)
        foreign = _foreign(tmp_path, kind)
        os.replace(foreign, path)
        before = _snapshot_of(path)
        for operation in (store.cleanup, store.verify, store.doctor):
            with pytest.raises(StoreFormatError, match="store"):
                operation()
        with pytest.raises(StoreFormatError):
            store.verify(repair=True)
    assert _snapshot_of(path) == before


@pytest.mark.parametrize("kind", ["regular file", "directory of something else"])
def test_every_cli_command_on_a_path_that_is_no_store_exits_2(kind: str, tmp_path: Path) -> None:
    path = _foreign(tmp_path, kind)
    before = _snapshot_of(path)
    commands = [*CLI_COMMANDS, ("show", "0123abcd"), ("export-json", "0123abcd")]
    for command in commands:
        result = subprocess.run(
            [str(SCRIPT), "--store", str(path), *command],
            capture_output=True,
            text=True,
            env=_env(tmp_path / "home"),
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "store" in result.stderr
        assert "Traceback" not in result.stderr
    assert _snapshot_of(path) == before
