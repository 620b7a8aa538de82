"""Verify once per machine and boot: a cold process does not hash again an
object that this machine already verified and that has not changed since,
and nothing else is ever trusted without hashing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import msgpack
import pytest
from _files import flip_byte
from _layout import local_dir, object_files
from conftest import StoreFactory

from marimo_store import Entry, ExecutionKey, StoreWarning
from marimo_store._format.framing import frame
from marimo_store._hashed_objects import boot_id, fingerprint, ledger_name

pytestmark = pytest.mark.skipif(boot_id() is None, reason="no boot id: nothing is shared")

SUBPROCESS_TIMEOUT = 60
KEY = ExecutionKey("block", "big")
BIG = os.urandom(8 * 1024 * 1024)


def hashes_in_a_new_process(store_path: Path, expected: bytes | None) -> int:
    """Get KEY in a fresh interpreter; return how many object hashes it computed."""
    script = textwrap.dedent(
        f"""
        import sys, warnings
        from marimo_store import _objects, ExecutionKey, FsPersistentStore
        calls = []
        real = _objects.content_digest
        _objects.content_digest = lambda data: calls.append(1) or real(data)
        warnings.simplefilter("ignore")
        store = FsPersistentStore({str(store_path)!r}, object_grace_seconds=0)
        entry = store.get(ExecutionKey("block", "big"))
        got = None if entry is None else bytes(entry.variables["v"])
        expected = None if sys.argv[1] == "miss" else open(sys.argv[1], "rb").read()
        assert got == expected, "wrong value"
        print(len(calls))
        """
    )
    reference = store_path.parent / "expected.bin"
    if expected is not None:
        reference.write_bytes(expected)
    argument = "miss" if expected is None else str(reference)
    done = subprocess.run(
        [sys.executable, "-c", script, argument],
        check=True,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    return int(done.stdout.strip())


def the_object(store_path: Path) -> Path:
    (path,) = [p for p in object_files(store_path) if p.stat().st_size >= len(BIG)]
    return path


def test_a_new_process_trusts_what_this_machine_wrote(
    make_store: StoreFactory, store_path: Path
) -> None:
    make_store().put(Entry.of(KEY, {"v": BIG}))
    assert hashes_in_a_new_process(store_path, BIG) == 0
    assert (local_dir(store_path) / str(ledger_name())).is_file()


def test_a_new_process_trusts_what_another_process_verified(
    make_store: StoreFactory, store_path: Path
) -> None:
    make_store().put(Entry.of(KEY, {"v": BIG}))
    for ledger in local_dir(store_path).iterdir():
        ledger.unlink()  # as if written on another machine and synced here
    assert hashes_in_a_new_process(store_path, BIG) == 1
    assert hashes_in_a_new_process(store_path, BIG) == 0


@pytest.mark.parametrize("restore_mtime", [False, True])
def test_a_changed_file_is_hashed_again_and_refused(
    make_store: StoreFactory, store_path: Path, restore_mtime: bool
) -> None:
    make_store().put(Entry.of(KEY, {"v": BIG}))
    path = the_object(store_path)
    before = path.stat()
    flip_byte(path, len(BIG) // 2)
    if restore_mtime:  # what `touch -r` or `rsync -t` could do; the ctime still moves
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert hashes_in_a_new_process(store_path, None) == 1
    assert not path.exists(), "the damaged object moved to quarantine"


def test_records_of_an_earlier_boot_vouch_for_nothing(
    make_store: StoreFactory, store_path: Path
) -> None:
    """After a power cut, data never fsynced may be lost while inode times
    survive: a record written before the reboot must not be believed."""
    make_store().put(Entry.of(KEY, {"v": BIG}))
    path = the_object(store_path)
    flip_byte(path, 0)
    object_id = path.parent.name + path.name
    current = ledger_name()
    assert current is not None
    earlier = current.replace(str(boot_id()), "0" * 32)
    record = [object_id, *fingerprint(path.stat())]
    (local_dir(store_path) / earlier).write_bytes(frame(msgpack.packb(record)))
    (local_dir(store_path) / current).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreWarning)
        assert hashes_in_a_new_process(store_path, None) == 1

    make_store().cleanup()
    assert not (local_dir(store_path) / earlier).exists(), "cleanup prunes earlier boots"
