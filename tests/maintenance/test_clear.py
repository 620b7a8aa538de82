"""`store.clear()` and `marimo-store clear`: everything goes, and only when asked.

The command asks on a real terminal (a pseudo-terminal here) and refuses
without `--yes` anywhere else, so that no script empties a store by mistake.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
from pathlib import Path

import numpy as np
from _layout import object_ids
from _scripts import COMMAND, command_environment
from _scripts import run_command as run

from marimo_store import Entry, ExecutionKey, FsPersistentStore


def fill(path: Path) -> list[ExecutionKey]:
    store = FsPersistentStore(path, cleanup_on_exit=False)
    keys = [
        store.put(Entry.of(ExecutionKey("f", f"m{i}"), {"a": np.full(50_000, i)})).key
        for i in range(3)
    ]
    store.close()
    assert len(object_ids(path)) == 3
    return keys


def run_on_a_terminal(home: Path, answer: str, *args: str) -> tuple[int, str]:
    """The command on a pseudo-terminal, typing `answer` at its prompt."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(COMMAND), *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=home,
        env=command_environment(home),
    )
    os.close(terminal)
    output = b""
    asked = False
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        assert ready, f"no output for 60 s: {output!r}"
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the other side closed: the command is done
            break
        if not chunk:
            break
        output += chunk
        if not asked and b"[y/N]" in output:
            os.write(controller, answer.encode() + b"\n")
            asked = True
    os.close(controller)
    assert asked, output
    return process.wait(timeout=60), output.decode(errors="replace")


def test_clear_drops_every_entry_and_deletes_their_objects(store_path: Path) -> None:
    keys = fill(store_path)
    store = FsPersistentStore(store_path, cleanup_on_exit=False)
    preview = store.clear(dry_run=True)
    assert {d.key for d in preview.dropped} == set(keys)
    assert len(store.entries()) == 3 and len(object_ids(store_path)) == 3  # unchanged

    report = store.clear()
    assert {d.key for d in report.dropped} == set(keys)
    assert report.objects_deleted == 3 and report.spared == []
    assert store.entries() == [] and object_ids(store_path) == set()
    assert all(store.get(key) is None for key in keys)
    store.close()


def test_the_command_needs_yes_off_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "store"
    keys = fill(path)
    listed = run(tmp_path, "clear", "--dry-run", "--json", "--store", str(path))
    assert listed.returncode == 0
    assert len(json.loads(listed.stdout)["dropped"]) == len(keys)

    refused = run(tmp_path, "clear", "--store", str(path))
    assert refused.returncode == 2
    assert "needs --yes" in refused.stderr
    assert len(object_ids(path)) == 3

    done = run(tmp_path, "clear", "--yes", "--json", "--store", str(path))
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["dropped"]) == len(keys)
    assert object_ids(path) == set()
    assert FsPersistentStore(path, cleanup_on_exit=False).entries() == []


def test_the_command_asks_on_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "store"
    fill(path)
    code, output = run_on_a_terminal(tmp_path, "n", "clear", "--store", str(path))
    assert "Drop all 3 entries" in output
    assert code == 1 and "nothing was deleted" in output
    assert len(object_ids(path)) == 3

    code, output = run_on_a_terminal(tmp_path, "y", "clear", "--store", str(path))
    assert code == 0, output
    assert "dropped 3 entries" in output
    assert object_ids(path) == set()
