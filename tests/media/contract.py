"""The contract every storage medium keeps (`marimo_store._media.Medium`).

Plain functions taking a medium, so that one suite runs against every
implementation (`test_local_medium.py`, `test_object_store_medium.py`).
Functions that need other processes take `reopen`: a picklable callable
that builds the same medium again in a child process (started with
"spawn", so no thread state is inherited).

What they check is what the format relies on (docs/format.md §15):
write-once puts with exactly one winner and whole bytes, atomic replace,
byte ranges, listing by prefix, deleting what is absent, and keys that
cannot leave the medium.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from marimo_store._errors import InvalidArgumentError
from marimo_store._media import Medium, MediumError, MediumMissing, check_key

Reopen = Callable[[], Any]
"""Builds the medium under test again (in a child process)."""

HOSTILE_KEYS = (
    "",
    "/",
    "/etc/passwd",
    "../outside",
    "a/../../outside",
    "a/./b",
    "a//b",
    "a/",
    "./a",
    "..",
    "a\\..\\b",
    "C:/x",
    "a/b c",
    "caf\u00e9",
    "a\x00b",
    "~/x",
)
"""Keys no medium may accept: each could leave the root somewhere."""

_WORKERS = 4
_PAYLOAD_BYTES = 2 * 1024 * 1024


# -- write-once puts ----------------------------------------------------------------------


def put_once_is_write_once(medium: Medium) -> None:
    """The first put stores the concatenated parts; a second put of the key
    returns False and leaves them as they were."""
    assert medium.put_once("objects/ab/one", [b"hello ", memoryview(b"world")]) is True
    assert medium.read("objects/ab/one") == b"hello world"
    assert medium.put_once("objects/ab/one", [b"other bytes"]) is False
    assert medium.read("objects/ab/one") == b"hello world"
    info = medium.head("objects/ab/one")
    assert info is not None
    assert (info.key, info.size) == ("objects/ab/one", 11)
    assert medium.put_once("objects/ab/empty", []) is True
    assert medium.read("objects/ab/empty") == b""


def _payload(worker: int) -> bytes:
    """Bytes that tell which worker wrote them, anywhere in the file."""
    return bytes([worker + 1]) * _PAYLOAD_BYTES


def _put_worker(reopen: Reopen, key: str, worker: int, start: Any, results: Any) -> None:
    medium = reopen()
    start.wait()
    results.put((worker, medium.put_once(key, [_payload(worker)])))


def concurrent_put_once_has_one_winner(medium: Medium, reopen: Reopen) -> None:
    """Several processes put one key at once: exactly one returns True, and
    the key holds that one's bytes, whole."""
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    results = context.Queue()
    key = "objects/cd/raced"
    workers = [
        context.Process(target=_put_worker, args=(reopen, key, worker, start, results))
        for worker in range(_WORKERS)
    ]
    for process in workers:
        process.start()
    start.set()
    outcomes = dict(results.get(timeout=120) for _ in workers)
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    winners = [worker for worker, won in outcomes.items() if won]
    assert len(winners) == 1, outcomes
    assert medium.read(key) == _payload(winners[0])


# -- atomic replace -----------------------------------------------------------------------


def _replace_worker(reopen: Reopen, key: str, rounds: int, done: Any) -> None:
    medium = reopen()
    for round_number in range(rounds):
        medium.replace(key, _payload(round_number % 2))
    done.set()


def replace_is_atomic_to_a_concurrent_reader(medium: Medium, reopen: Reopen) -> None:
    """While another process replaces a key again and again, every read
    sees one whole version, never a mix or a prefix."""
    key = "snapshots/head"
    medium.replace(key, _payload(0))
    medium.replace(key, _payload(1))
    assert medium.read(key) == _payload(1)
    context = multiprocessing.get_context("spawn")
    done = context.Event()
    writer = context.Process(target=_replace_worker, args=(reopen, key, 40, done))
    writer.start()
    seen = set()
    reads = 0
    while not done.is_set() or reads == 0:
        data = medium.read(key)
        assert data in (_payload(0), _payload(1)), f"a torn read of {len(data)} bytes"
        seen.add(data[0])
        reads += 1
    writer.join(timeout=60)
    assert writer.exitcode == 0
    assert seen


# -- reads --------------------------------------------------------------------------------


def read_range_edges(medium: Medium) -> None:
    """Ranges inside, across and past the end; an absent key is `MediumMissing`."""
    data = bytes(range(256)) * 4
    medium.put_once("r/k", [data])
    size = len(data)
    assert medium.read_range("r/k", 0, size) == data
    assert medium.read_range("r/k", 0, 1) == data[:1]
    assert medium.read_range("r/k", 10, 20) == data[10:20]
    assert medium.read_range("r/k", size - 3, size + 100) == data[-3:]
    assert medium.read_range("r/k", 5, 5) == b""
    assert medium.read_range("r/k", size, size + 10) == b""
    with pytest.raises(MediumMissing):
        medium.read("r/absent")
    with pytest.raises(MediumMissing):
        medium.read_range("r/absent", 0, 1)
    assert medium.head("r/absent") is None


def list_with_prefixes(medium: Medium) -> None:
    """A prefix lists every key beneath it (at any depth) and nothing else."""
    keys = {"a/b/1": b"1", "a/b/2": b"22", "a/c": b"333", "ab": b"4", "z/y": b""}
    for key, data in keys.items():
        medium.put_once(key, [data])

    def names(prefix: str) -> set[str]:
        return {info.key for info in medium.list(prefix)}

    assert names("") >= set(keys)
    assert names("a/") == {"a/b/1", "a/b/2", "a/c"}
    assert names("a/b/") == {"a/b/1", "a/b/2"}
    assert names("z/") == {"z/y"}
    assert names("nothing/") == set()
    sizes = {info.key: info.size for info in medium.list("a/")}
    assert sizes == {"a/b/1": 1, "a/b/2": 2, "a/c": 3}
    assert all(info.modified_ns > 0 for info in medium.list("a/"))


def delete_of_absent(medium: Medium) -> None:
    """Deleting an absent key is not an error; a deleted key is absent."""
    medium.delete("d/never")
    medium.put_once("d/k", [b"x"])
    medium.delete("d/k")
    medium.delete("d/k")
    assert medium.head("d/k") is None
    with pytest.raises(MediumMissing):
        medium.read("d/k")
    assert medium.put_once("d/k", [b"y"]) is True  # a deleted key can be put again
    assert medium.read("d/k") == b"y"


# -- keys ---------------------------------------------------------------------------------


def _operations(medium: Medium, key: str) -> Iterator[Callable[[], object]]:
    yield lambda: medium.put_once(key, [b"x"])
    yield lambda: medium.replace(key, b"x")
    yield lambda: medium.read(key)
    yield lambda: medium.read_range(key, 0, 1)
    yield lambda: medium.head(key)
    yield lambda: medium.delete(key)
    yield lambda: list(medium.list(key + "/"))


def check_key_refuses_hostile_keys(medium: Medium) -> None:
    """`check_key` and every operation refuse a key that could leave the medium."""
    for key in HOSTILE_KEYS:
        with pytest.raises(InvalidArgumentError):
            check_key(key)
        for operation in _operations(medium, key):
            with pytest.raises(InvalidArgumentError):
                operation()
    assert check_key("objects/ab/" + "0" * 30) == "objects/ab/" + "0" * 30
    assert check_key("", prefix=True) == ""
    assert check_key("log/", prefix=True) == "log/"


def a_symlink_in_the_root_never_redirects_a_write(medium: Medium, root: Path) -> None:
    """A symlink planted where the medium keeps files (to a directory or to
    a file outside) never makes a write land outside the root. For media
    kept in a local directory `root`."""
    outside = root.parent / f"{root.name}-outside"
    outside.mkdir()
    (outside / "target").write_bytes(b"precious")
    root.mkdir(exist_ok=True)
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "file").symlink_to(outside / "target")
    for write in (
        lambda: medium.put_once("linked/new", [b"evil"]),
        lambda: medium.replace("linked/target", b"evil"),
    ):
        with contextlib.suppress(MediumError):
            write()
    assert sorted(p.name for p in outside.iterdir()) == ["target"]
    assert medium.put_once("file", [b"evil"]) is False  # the name is taken (by the link)
    medium.replace("file", b"own")  # replaces the link itself
    medium.delete("file")
    assert (outside / "target").read_bytes() == b"precious"
    assert {info.key for info in medium.list("")}.isdisjoint({"linked/target", "file"})


CONTRACT: tuple[Callable[[Medium], None], ...] = (
    put_once_is_write_once,
    read_range_edges,
    list_with_prefixes,
    delete_of_absent,
    check_key_refuses_hostile_keys,
)
"""The checks that need nothing but a fresh, empty medium."""
