"""Which object files this machine has already hashed, since it last booted.

Verifying a 1 GiB object costs a full xxh3 pass (about 35 ms here); doing
it once per *process* would make every new kernel pay it again for files
that have not changed. So a verification is remembered by the file's stat
fingerprint (device, inode, size, mtime and ctime in nanoseconds), first in
memory, and for large objects also in a small append-only file that the
processes of one machine share: `local/verified-<host>-<boot id>.log`.

Why that is safe:
- Any change to a file's bytes changes its mtime or its ctime, and no tool
  can set a ctime back; a file written again gets a new inode too.
- The boot id is in the name: a power cut can lose file data that was never
  fsynced while its inode times survive, so records from before a reboot
  vouch for nothing and are never read.
- The host name is in the name: a sync tool that copies the folder to
  another machine brings files whose fingerprints cannot match there (other
  inodes, other ctimes), and no two machines write the same file.
Where no boot id is known (platforms other than Linux) nothing is shared:
each process verifies once, in memory.

A damaged or torn record only ends the reading of the file early: it costs
hashing again, never trust in a wrong file.

The SHA-256 checks of signed entries (docs/security.md) are remembered in
memory only, never in the shared file: whoever can write the store folder
can write `local/` too, so a record there vouches for nothing against the
people signatures are meant to stop.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading

import msgpack

from marimo_store import _fs
from marimo_store._format.framing import frame, unpack_any
from marimo_store._format.layout import (
    VERIFIED_LEDGER_PREFIX,
    scan_real_directory,
    verified_ledger,
)
from marimo_store._hashing import HEX_DIGITS
from marimo_store._log import FrameStream, host_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeAlias

    Fingerprint: TypeAlias = tuple[int, int, int, int, int]

SHARED_MIN_BYTES = 4 * 1024 * 1024
"""Smaller objects hash in under ~150 µs: not worth a record in the shared file."""


def fingerprint(stat: os.stat_result) -> Fingerprint:
    """What changes whenever a file's bytes may have changed."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@functools.cache
def boot_id() -> str | None:
    """This boot of this machine, as lowercase hex; None where unknown."""
    try:
        # Bytes, decoded by hand: a text-mode open with an encoding imports
        # that codec (half a millisecond, on a get's path).
        with open("/proc/sys/kernel/random/boot_id", "rb") as file:
            raw = file.read(64)
    except OSError:
        return None
    text = raw.decode("latin-1").strip().replace("-", "").lower()
    return text if text and set(text) <= HEX_DIGITS else None


def ledger_name() -> str | None:
    """The shared file of this host and boot, or None where nothing is shared."""
    booted = boot_id()
    return None if booted is None else verified_ledger(host_name(), booted)


class VerifiedObjects:
    """Object ids with the fingerprint of the file that was verified.

    One per store instance, shared by its reading and writing sides, so a
    file this process wrote (and hashed while writing) is never hashed
    again here, nor, when large, in any later process of this boot.
    """

    def __init__(self, local_dir: str) -> None:
        self._local_dir = local_dir
        self._path: str | None = None
        self._known: dict[str, Fingerprint] = {}
        self._digests: dict[str, tuple[Fingerprint, bytes]] = {}
        self._damaged: dict[str, Fingerprint] = {}
        self._loaded = False  # the shared file is read on first need, not on open
        self._lock = threading.Lock()

    def is_verified(self, object_id: str, seen: Fingerprint) -> bool:
        """Whether the file with fingerprint `seen` was verified as `object_id`."""
        if not self._loaded and seen[2] >= SHARED_MIN_BYTES:
            self._load()
        return self._known.get(object_id) == seen

    def add(self, object_id: str, seen: Fingerprint) -> None:
        """Remember a verification; large objects are shared with later processes."""
        with self._lock:
            if self._known.get(object_id) == seen:
                return
            self._known[object_id] = seen
        if seen[2] < SHARED_MIN_BYTES:
            return
        if not self._loaded:
            self._load()
        if self._path is not None:
            with contextlib.suppress(OSError):  # read-only: this process still remembers
                if not os.path.isdir(self._local_dir):
                    _fs.makedirs(self._local_dir)
                _fs.append_to(self._path, _record(object_id, seen))

    def forget(self, object_id: str, damaged: Fingerprint | None = None) -> None:
        """The object failed verification (or was replaced): trust it no more
        here. `damaged`: the fingerprint of the file that failed, which a put
        of the same bytes then replaces instead of reusing."""
        with self._lock:
            self._known.pop(object_id, None)
            self._digests.pop(object_id, None)
            if damaged is not None:
                self._damaged[object_id] = damaged

    def is_damaged(self, object_id: str, seen: Fingerprint) -> bool:
        """Whether the file with fingerprint `seen` failed verification here."""
        return self._damaged.get(object_id) == seen

    def has_digest(self, object_id: str, seen: Fingerprint, digest: bytes) -> bool:
        """Whether this process found the file with fingerprint `seen` to have
        the SHA-256 `digest`."""
        return self._digests.get(object_id) == (seen, digest)

    def add_digest(self, object_id: str, seen: Fingerprint, digest: bytes) -> None:
        """Remember, in this process only, a file's checked SHA-256."""
        with self._lock:
            self._digests[object_id] = (seen, digest)

    def _load(self) -> None:
        name = ledger_name()
        self._path = None if name is None else os.path.join(self._local_dir, name)
        found = {} if self._path is None else _read_ledger(self._path)
        with self._lock:
            for object_id, seen in found.items():
                self._known.setdefault(object_id, seen)
            self._loaded = True


def _record(object_id: str, seen: Fingerprint) -> bytes:
    return frame(msgpack.packb([object_id, *seen]))


def _read_ledger(path: str) -> dict[str, Fingerprint]:
    found: dict[str, Fingerprint] = {}
    try:
        with _fs.open_read(path) as file:
            for payload in FrameStream(file, 0, os.fstat(file.fileno()).st_size):
                row = unpack_any(payload)
                if (
                    isinstance(row, list)
                    and len(row) == 6
                    and isinstance(row[0], str)
                    and all(type(n) is int for n in row[1:])
                ):
                    found[row[0]] = (row[1], row[2], row[3], row[4], row[5])
    except OSError:
        return found
    return found


def prune_ledgers(local_dir: str, path_of: Callable[[str], str], temp_path: str) -> None:
    """Delete this host's ledgers of earlier boots; rewrite the current one
    without the records of files that changed or are gone, once they are half.

    Run by cleanup, through the storage seam (`LocalMedium` over `local/`,
    rewriting by temp name and rename, W3). A process appending to the old
    file meanwhile only loses its record (the next read hashes again), never
    trusts a wrong file.
    """
    from marimo_store._media.local import LocalMedium  # noqa: PLC0415 - cleanup only

    current = ledger_name()
    mine = f"{VERIFIED_LEDGER_PREFIX}{host_name()}-"
    if not scan_real_directory(local_dir):  # missing, or a symlink (which it warns of)
        return
    medium = LocalMedium(local_dir, temp_path=lambda: temp_path)
    names = [info.key for info in medium.list(mine)]
    for name in names:
        if name != current:
            medium.delete(name)
    if current is None or current not in names:
        return
    path = medium.local_path(current)
    records = _read_ledger(path)
    valid = {}
    for object_id, seen in records.items():
        try:
            if fingerprint(os.stat(path_of(object_id))) == seen:
                valid[object_id] = seen
        except OSError:
            continue
    if 2 * len(valid) <= len(records) and records:
        kept = b"".join(_record(object_id, seen) for object_id, seen in valid.items())
        medium.replace(current, kept)
