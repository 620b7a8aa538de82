"""Whether a path lies inside a folder a sync tool manages (Dropbox,
Syncthing, OneDrive, iCloud Drive, Google Drive, Nextcloud/ownCloud), told by
the marker each tool leaves at its folder's root or by where it keeps it.

Two users: `doctor()` warns about it, and object GC treats a store inside one
as shared with other machines even before any other machine's log has
arrived (a sync tool propagates a deletion to every copy, so an object
deleted at once here disappears on a machine that reused it too; see
docs/format.md §10.7 rule (a)). Only reads names; never raises.
"""

from __future__ import annotations

import os


def _sync_tool_at(directory: str, home: str) -> str | None:
    """Which sync tool, if any, owns `directory` (as the root of its folder)."""
    name = os.path.basename(directory)
    parent = os.path.dirname(directory)

    def has(marker: str) -> bool:
        return os.path.exists(os.path.join(directory, marker))

    if has(".dropbox") or has(".dropbox.cache"):
        return "Dropbox"
    if has(".stfolder"):
        return "Syncthing"
    if has(".owncloudsync.log") or any(
        entry.startswith((".sync_", "._sync_")) and entry.endswith(".db")
        for entry in names_in(directory)
    ):
        return "Nextcloud/ownCloud"
    if os.path.basename(parent) == "CloudStorage":
        for prefix, tool in (
            ("OneDrive", "OneDrive"),
            ("GoogleDrive", "Google Drive"),
            ("Dropbox", "Dropbox"),
            ("iCloud", "iCloud Drive"),
        ):
            if name.startswith(prefix):
                return tool
    if name in {"Mobile Documents", "iCloudDrive"}:
        return "iCloud Drive"
    if parent == home and (name == "OneDrive" or name.startswith("OneDrive - ")):
        return "OneDrive"
    return None


def names_in(directory: str) -> list[str]:
    """The names in `directory`; none if it cannot be listed."""
    try:
        return os.listdir(directory)
    except OSError:
        return []


def sync_folder_of(path: str) -> tuple[str, str] | None:
    """`(tool, folder)` if `path` lies inside a folder a sync tool manages."""
    home = os.path.realpath(os.path.expanduser("~"))
    directory = os.path.realpath(path)
    for variable, tool in (
        ("OneDrive", "OneDrive"),
        ("OneDriveCommercial", "OneDrive"),
        ("OneDriveConsumer", "OneDrive"),
    ):
        root = os.environ.get(variable)
        if root and (directory + os.sep).startswith(os.path.realpath(root) + os.sep):
            return tool, os.path.realpath(root)
    while True:
        found = _sync_tool_at(directory, home)
        if found is not None:
            return found, directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent
