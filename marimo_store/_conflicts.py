"""How sync tools and git name the copies they make, and how to undo it.

When two machines change one path before they have heard from each other,
sync tools keep both versions: one under the original name, the other
renamed. The store never depends on names for correctness (objects verify
against their hash, snapshots and segments carry their identity inside),
but `verify()` wants the original name back to put a good object copy where
readers look for it, and `doctor()` wants to say which tool made the copies.

`verify()`, `doctor()` and the store-directory check (`other_files`: a
copy of a store file is still the store's) import this module.
"""

from __future__ import annotations

import functools
import re

_EXTENSION = r"(?P<ext>\.[A-Za-z0-9]{1,8})?"
_PATTERNS = (
    # name.sync-conflict-20261121-101500-ABCDEF1.ext (the device part since v0.14)
    ("Syncthing", r"^(?P<stem>.+?)\.sync-conflict-\d{8}-\d{6}(?:-[A-Z0-9]{7})?" + _EXTENSION),
    # name (host's conflicted copy 2026-11-21).ext, name (conflicted copy 2026-11-21
    # 101500).ext (Nextcloud, ownCloud), name (Case Conflict).ext, name (Selective
    # Sync Conflict).ext
    (
        "Dropbox",
        r"^(?P<stem>.+?) \((?:[^()]*conflicted copy[^()]*(?:\(\d+\))?|Case Conflict(?: \d+)?"
        r"|Selective Sync Conflict(?: \d+)?)\)" + _EXTENSION,
    ),
    # name (1).ext: Google Drive, Dropbox and browsers
    ("Google Drive", r"^(?P<stem>.+?) \(\d+\)" + _EXTENSION),
    # name 2.ext: iCloud Drive
    ("iCloud", r"^(?P<stem>.+?) \d+" + _EXTENSION),
    # name.orig (git mergetool), name~HEAD / name~branch (git checkout of a
    # rename/delete conflict)
    ("git", r"^(?P<stem>.+?)(?P<ext>)(?:\.orig|~[^~/\\]+)$"),
    # name-HOST.ext: OneDrive (ambiguous on its own: callers check that the
    # original is a plausible name)
    ("OneDrive", r"^(?P<stem>.+)-[A-Za-z0-9][A-Za-z0-9_]*(?:-\d+)?" + _EXTENSION),
)


@functools.cache
def _compiled() -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((tool, re.compile(pattern)) for tool, pattern in _PATTERNS)


def _match(pattern: re.Pattern[str], name: str) -> str | None:
    match = pattern.fullmatch(name)
    if match is None:
        return None
    return match.group("stem") + (match.group("ext") or "")


def sync_copy_of(name: str, plausible: re.Pattern[str] | None = None) -> tuple[str, str] | None:
    """`(tool, original name)` if `name` is how a sync tool names a copy.

    `plausible`: a pattern the original name must match fully (for example
    an object or snapshot name), which rules out readings such as
    OneDrive's `-HOST` suffix on names that merely contain a dash.
    """
    for tool, pattern in _compiled():
        original = _match(pattern, name)
        if original is not None and (plausible is None or plausible.fullmatch(original)):
            return tool, original
    return None


def original_name(name: str) -> str:
    """The name a chain of sync-tool copies started from: a tool may copy a
    copy (`format.sync-conflict-….sync-conflict-….json`), so undo each
    renaming in turn (a few at most)."""
    for _ in range(_MOST_RENAMINGS):
        found = sync_copy_of(name)
        if found is None:
            break
        name = found[1]
    return name


_MOST_RENAMINGS = 8
"""Copies of copies beyond this are not worth undoing."""
