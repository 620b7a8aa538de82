"""`store.doctor()`: what about this store's surroundings deserves attention.

Nothing `doctor()` reports can make the store return a wrong value; each
finding is about space, misses, speed or noise, and says what to do. It
only reads (names and a few headers; no hashing: that is `verify()`).
"""

from __future__ import annotations

import os
from collections import Counter

from marimo_store._cleanup_files import stale_temp_files
from marimo_store._conflicts import sync_copy_of
from marimo_store._entry import now_ms
from marimo_store._findings import Finding
from marimo_store._format.layout import GENERATED_NAMES, LOCAL_DIRECTORIES
from marimo_store._format.names import OBJECT_NAME, SEGMENT_NAME, SNAPSHOT_NAME
from marimo_store._marimo_config import ignored_store_finding
from marimo_store._sync_folders import names_in, sync_folder_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re

    from marimo_store._maintenance import Maintenance

CLOCK_SKEW_TOLERANCE_MS = 5 * 60_000
"""Timestamps this far ahead of the local clock mean two clocks disagree."""

_EXCLUDE = ", ".join(f"{name}/" for name in LOCAL_DIRECTORIES[:-1]) + (
    f" and {LOCAL_DIRECTORIES[-1]}/"
)

_SYNC_ADVICE = {
    "Dropbox": (
        "Keep the folder available offline (not online-only: a placeholder is a miss "
        f"until it downloads) and exclude {_EXCLUDE} from sync with the "
        "com.dropbox.ignored attribute (Linux: attr -s com.dropbox.ignored -V 1 DIR; "
        "macOS: xattr -w com.dropbox.ignored 1 DIR; Windows: Set-Content -Path DIR "
        "-Stream com.dropbox.ignored -Value 1)."
    ),
    "Syncthing": (
        f"Add {_EXCLUDE} (relative to the store) to the folder's .stignore. Syncthing "
        "brings back a file deleted on one side and modified on the other; for the "
        "store that only costs space until the next cleanup."
    ),
    "OneDrive": (
        "Mark the folder 'Always keep on this device' (Files On-Demand placeholders are "
        "misses while offline and a download on every first read). OneDrive cannot exclude "
        f"sub-folders, so {_EXCLUDE} are synced too: harmless, only traffic."
    ),
    "iCloud Drive": (
        "Turn off 'Optimize Mac Storage' or keep the store outside iCloud Drive: an "
        "evicted file is a miss until it downloads. iCloud names its conflicting copies "
        "'name 2'; verify(repair=True) puts verified ones in place."
    ),
    "Google Drive": (
        "Choose 'Mirror files' rather than 'Stream files' for this folder, so reads do "
        "not wait for downloads."
    ),
    "Nextcloud/ownCloud": (
        f"Exclude {_EXCLUDE} in the client's ignored files list and keep the folder "
        "available offline."
    ),
}
_COMMON_SYNC_ADVICE = (
    " Several machines may put and get at the same time. Object GC (every cleanup "
    "unless include_content=False) keeps an object that arrives before its log for "
    "object_grace_seconds: keep that above the longest a machine's log lags behind its "
    "objects; with several machines cleaning up, object_id_mode='execution_key_qualified' "
    "keeps one machine's GC away from another's objects. See docs/sync.md."
)


def _copies_in(directory: str, plausible: re.Pattern[str]) -> list[tuple[str, str]]:
    """`(tool, path)` of the sync-tool copies of store files in `directory`."""
    found = []
    for name in names_in(directory):
        if plausible.fullmatch(name):
            continue
        copy = sync_copy_of(name, plausible)
        if copy is not None:
            found.append((copy[0], os.path.join(directory, name)))
    return found


def _conflicted_copies(store: Maintenance) -> list[tuple[str, str]]:
    layout = store.layout
    found = _copies_in(layout.snapshots, SNAPSHOT_NAME) + _copies_in(layout.log, SEGMENT_NAME)
    for fan in names_in(layout.objects):
        found += _copies_in(os.path.join(layout.objects, fan), OBJECT_NAME)
    for name in names_in(layout.root):
        copy = sync_copy_of(name)
        if copy is not None and copy[1] in GENERATED_NAMES and name not in GENERATED_NAMES:
            found.append((copy[0], os.path.join(layout.root, name)))
    return found


def _newest_timestamp(store: Maintenance) -> int | None:
    state, _, snapshots = store.merged_state()
    stamps = [stored.metadata.created_at for stored in state.entries.values()]
    stamps += state.last_access.values()
    stamps += [snapshot.created_at for snapshot in snapshots.files]
    return max(stamps, default=None)


def _watch_finding(store: Maintenance, network: bool) -> Finding | None:
    from marimo_store._changes import native_watching  # noqa: PLC0415

    if network:
        reason = "it is on a network file system (other machines' writes raise no events)"
    elif not native_watching():
        reason = "watchdog has no native observer on this platform"
    else:
        return None
    return Finding(
        "change-notification",
        "info",
        f"Change notification is off because {reason}: after a miss, the store looks "
        f"for other writers' entries at most every refresh_interval "
        f"({store.options.refresh_interval:g} s).",
    )


def diagnose(store: Maintenance) -> list[Finding]:
    """Everything `doctor()` reports (see `FsPersistentStore.doctor`)."""
    from marimo_store._mounts import (  # noqa: PLC0415 - reads mount tables
        NETWORK_FILESYSTEMS,
        filesystem_type,
    )

    store.layout.require_store_directory(allow_other_files=store.options.allow_other_files)
    findings: list[Finding] = []
    fs_type = filesystem_type(store.path) if os.path.exists(store.path) else None
    network = fs_type is not None and fs_type.lower() in NETWORK_FILESYSTEMS
    if network:
        findings.append(
            Finding(
                "network-filesystem",
                "warning",
                f"The store is on a network file system ({fs_type}). Values stay correct, "
                "but locks do not reach other machines: object GC (every cleanup unless "
                "include_content=False) then relies on object_grace_seconds alone for "
                "another machine's puts in flight; on more than one machine, use "
                "object_id_mode='execution_key_qualified'.",
                (store.path,),
            )
        )
    synced = sync_folder_of(store.path)
    if synced is not None:
        tool, folder = synced
        findings.append(
            Finding(
                "sync-folder",
                "warning",
                f"The store is inside a {tool} folder ({folder}). "
                + _SYNC_ADVICE[tool]
                + _COMMON_SYNC_ADVICE,
                (folder,),
            )
        )
    copies = _conflicted_copies(store)
    if copies:
        tools = Counter(tool for tool, _ in copies)
        summary = ", ".join(f"{tool}: {count}" for tool, count in sorted(tools.items()))
        findings.append(
            Finding(
                "conflicted-copies",
                "warning",
                f"{len(copies)} conflicted copies of store files ({summary}). They never "
                "cause wrong values; verify(repair=True) puts verified copies at their "
                "true names and removes or quarantines the rest.",
                tuple(sorted(path for _, path in copies)),
            )
        )
    stale = [path for path, _ in stale_temp_files(store.layout.tmp)]
    if stale:
        findings.append(
            Finding(
                "stale-temp-files",
                "warning",
                f"{len(stale)} temp files in tmp/ were left by processes that died or are "
                "older than a day; the next cleanup() (or verify(repair=True)) deletes them.",
                tuple(sorted(stale)),
            )
        )
    newest = _newest_timestamp(store)
    ahead = (newest or 0) - now_ms()
    if newest is not None and ahead > CLOCK_SKEW_TOLERANCE_MS:
        findings.append(
            Finding(
                "clock-skew",
                "warning",
                f"The newest record is {ahead / 60_000:.0f} minutes ahead of this machine's "
                "clock: two machines' clocks disagree. Entries put here now look older than "
                "that machine's, so get() without created_at may prefer its older runs, and "
                "age-based cleanup misjudges ages. Synchronise the clocks (NTP).",
            )
        )
    watch = _watch_finding(store, network)
    if watch is not None:
        findings.append(watch)
    ignored = ignored_store_finding(os.getcwd())  # marimo searches from its working directory
    if ignored is not None:
        findings.append(ignored)
    return findings
