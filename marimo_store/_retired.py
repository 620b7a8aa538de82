"""Retired files: how a cleanup removes a file from a store kept in git.

A cleanup deletes superseded snapshots, consumed segments and (object GC)
unreferenced objects. In a git work tree that makes `git pull` stop: two
clones that each delete a file and add a similar new one (a snapshot with
most of the same entries) are seen by git's rename detection as two
renames of one file (`CONFLICT (rename/rename)`, `(rename/delete)`,
`(modify/delete)`), whatever `.gitattributes` says.

So inside a git work tree a cleanup does not delete such a file: it
*retires* it, replacing its bytes with a short marker that names it
(`marimo_store retired <name>`). The invariant: two clones that retire one
file make the identical change (git merges it cleanly); no file is ever
deleted, so git has no rename to detect; and every reader treats a retired
file as absent (no warning, never damage). Markers stay (a few dozen bytes
each): deleting one that another clone still holds whole would be a
modify/delete conflict.

Implements W3, M7, R1 (docs/format.md §14).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from marimo_store import _fs

MARKER_PREFIX = b"marimo_store retired "
MAX_MARKER_BYTES = 256
"""A marker is never longer; files longer than this are never markers."""


def marker(path: str) -> bytes:
    """The bytes that retire the file at `path` (the same on every clone)."""
    return MARKER_PREFIX + os.path.basename(path).encode() + b"\n"


def is_marker(data: bytes | memoryview) -> bool:
    """Whether a file's bytes are a retirement marker."""
    return len(data) <= MAX_MARKER_BYTES and bytes(data[: len(MARKER_PREFIX)]) == MARKER_PREFIX


def is_retired(path: str, size: int) -> bool:
    """Whether the file at `path` (of `size` bytes) is a retirement marker."""
    if size > MAX_MARKER_BYTES:
        return False
    try:
        with _fs.open_read(path) as file:
            return is_marker(_fs.read(file))
    except OSError:
        return False


def in_git_work_tree(root: str) -> bool:
    """Whether `root` lies inside a git work tree (a `.git` above it)."""
    directory = os.path.abspath(root)
    while True:
        if os.path.exists(os.path.join(directory, ".git")):
            return True
        parent = os.path.dirname(directory)
        if parent == directory:
            return False
        directory = parent


def remove(path: str, *, retire: bool, temp_path: Callable[[], str]) -> None:
    """Delete the file at `path`, or with `retire` replace it by its marker."""
    if retire:
        _fs.write_new_file(path, marker(path), temp_path=temp_path(), durable=False)
    else:
        _fs.unlink(path)
