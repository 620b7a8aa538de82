"""The medium contract (`contract.py`) against `LocalMedium`, plus what only
a local directory has: crash safety through `_fs`, `appender` and `lock`.

Real files and real processes throughout; the crash test replaces `_fs`'s
functions as tests/survival/test_crash.py does.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path

import contract
import pytest
from _faults import FileOps, SimulatedCrash, instrumented

from marimo_store._errors import NotSupportedError
from marimo_store._media import MediumError, MediumExists
from marimo_store._media.local import LocalMedium


class Reopen:
    """Builds a `LocalMedium` over `root` with temp names in `temp_dir`
    that no other process picks (picklable: it crosses into workers)."""

    def __init__(self, root: Path, temp_dir: Path, *, durable: bool = False) -> None:
        self.root = str(root)
        self.temp_dir = str(temp_dir)
        self.durable = durable

    def temp_names(self) -> Callable[[], str]:
        counter = itertools.count()
        pid = os.getpid()
        return lambda: os.path.join(self.temp_dir, f"{pid}-{next(counter)}.tmp")

    def __call__(self) -> LocalMedium:
        return LocalMedium(self.root, temp_path=self.temp_names(), durable=self.durable)


@pytest.fixture(params=[False, True], ids=["flush", "fsync"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Reopen:
    return Reopen(tmp_path / "medium", tmp_path / "tmp", durable=request.param)


@pytest.mark.parametrize("check", contract.CONTRACT, ids=lambda check: check.__name__)
def test_contract(reopen: Reopen, check: Callable[[LocalMedium], None]) -> None:
    check(reopen())


def test_concurrent_put_once_has_one_winner(reopen: Reopen) -> None:
    contract.concurrent_put_once_has_one_winner(reopen(), reopen)


def test_replace_is_atomic_to_a_concurrent_reader(reopen: Reopen) -> None:
    contract.replace_is_atomic_to_a_concurrent_reader(reopen(), reopen)


def test_a_symlink_in_the_root_never_redirects_a_write(reopen: Reopen) -> None:
    contract.a_symlink_in_the_root_never_redirects_a_write(reopen(), Path(reopen.root))


def test_no_temp_file_is_left_behind(reopen: Reopen) -> None:
    medium = reopen()
    medium.put_once("a/k", [b"x"])
    medium.put_once("a/k", [b"y"])
    medium.replace("a/k", b"z")
    assert os.listdir(reopen.temp_dir) == []


def test_a_crash_at_any_operation_leaves_the_key_whole_or_absent(tmp_path: Path) -> None:
    """`put_once` and `replace` stopped before each `_fs` operation in turn:
    the key is absent or holds all of its bytes (the old ones, for replace),
    also after a power cut drops what was never fsynced."""
    data = b"0123456789" * 200_000  # large enough to be preallocated
    for name, write in (
        ("put_once", lambda medium: medium.put_once("o/ab/k", [data])),
        ("replace", lambda medium: medium.replace("o/ab/k", data)),
    ):
        for k in itertools.count(1):
            work = tmp_path / f"{name}-{k}"
            reopen = Reopen(work / "medium", work / "tmp", durable=True)
            medium = reopen()
            if name == "replace":
                medium.put_once("o/ab/k", [b"old"])
            (work / "shadow").mkdir(parents=True)
            ops = FileOps(shadow_dir=str(work / "shadow"), crash_at=k)
            with instrumented(ops):
                try:
                    write(medium)
                except SimulatedCrash:
                    crashed = True
                else:
                    crashed = False
            ops.power_cut()
            found = LocalMedium(reopen.root).head("o/ab/k")
            allowed = {len(data)} | ({3} if name == "replace" else set())
            assert (found is None and name == "put_once") or (
                found is not None and found.size in allowed
            ), f"{name}, crash before operation {k}: {ops.log}"
            if found is not None and found.size == len(data):
                assert LocalMedium(reopen.root).read("o/ab/k") == data
            if not crashed:
                assert found is not None and found.size == len(data)
                break


def test_appender_extends_a_new_key_only(reopen: Reopen) -> None:
    medium = reopen()
    appender = medium.appender("log/w-1.seg")
    appender.append(b"head")
    appender.append(memoryview(b"er"))
    appender.sync()
    appender.close()
    assert medium.read("log/w-1.seg") == b"header"
    with pytest.raises(MediumExists):
        medium.appender("log/w-1.seg")


def test_lock_excludes_another_holder(reopen: Reopen) -> None:
    medium, other = reopen(), reopen()
    with (
        medium.lock("locks/objects.lock"),
        pytest.raises(MediumError),
        other.lock("locks/objects.lock", timeout=0.05),
    ):
        pass
    with other.lock("locks/objects.lock", timeout=0.05):
        pass


def test_a_read_only_medium_refuses_writes(reopen: Reopen) -> None:
    medium = LocalMedium(reopen.root)
    with pytest.raises(NotSupportedError):
        medium.put_once("k", [b"x"])


def test_os_errors_become_medium_errors_with_their_errno(reopen: Reopen) -> None:
    medium = reopen()
    medium.put_once("dir/k", [b"x"])
    with pytest.raises(MediumError) as caught:
        medium.read("dir")  # a directory where a file is asked for
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.errno == caught.value.__cause__.errno
