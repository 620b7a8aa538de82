"""Which file system a path lives on, and whether it is a network one.

Two things depend on it: change notification (inotify, FSEvents and
ReadDirectoryChangesW only see changes made through this machine's kernel,
so on NFS or SMB another machine's writes raise no event and the store must
poll), and `doctor()`, which warns that locks do not cross machines there.
Detection is best effort: `None` means "could not tell".
"""

from __future__ import annotations

import os
import re
import sys

NETWORK_FILESYSTEMS = frozenset(
    (
        "9p",
        "afpfs",
        "afs",
        "beegfs",
        "ceph",
        "cifs",
        "davfs",
        "fuse.davfs2",
        "fuse.gcsfuse",
        "fuse.glusterfs",
        "fuse.juicefs",
        "fuse.rclone",
        "fuse.s3fs",
        "fuse.sshfs",
        "glusterfs",
        "gpfs",
        "lustre",
        "ncpfs",
        "nfs",
        "nfs4",
        "smb",
        "smb3",
        "smbfs",
        "sshfs",
        "webdav",
    )
)


def _unescape(field: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def type_from_mountinfo(mountinfo: str, path: str) -> str | None:
    """The file system type of `path` (absolute, resolved) from Linux's
    `/proc/self/mountinfo` text: that of the longest mount point above it."""
    best, best_type = "", None
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        mount_point = _unescape(fields[4])
        fs_type = fields[fields.index("-") + 1] if fields.index("-") + 1 < len(fields) else ""
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fs_type
    return best_type


def type_from_mount_output(output: str, path: str) -> str | None:
    """The same from BSD/macOS `mount` output: `source on /point (type, options)`."""
    best, best_type = "", None
    for line in output.splitlines():
        source_and_point, _, rest = line.rpartition(" (")
        _, on, mount_point = source_and_point.partition(" on ")
        if not on or not rest:
            continue
        fs_type = rest.split(",")[0].strip(" )")
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fs_type
    return best_type


def filesystem_type(path: str) -> str | None:
    """The type of the file system holding `path` (or its nearest existing parent)."""
    path = os.path.realpath(path)
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as file:
                return type_from_mountinfo(file.read(), path)
        except OSError:
            return None
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return _windows_type(path)
    import subprocess  # noqa: PLC0415 - macOS and the BSDs only

    try:
        output = subprocess.run(
            ["/sbin/mount"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return type_from_mount_output(output, path)


def _windows_type(path: str) -> str | None:  # pragma: no cover - Windows only
    if path.startswith("\\\\"):
        return "smb"
    import ctypes  # noqa: PLC0415

    drive = os.path.splitdrive(path)[0] + "\\"
    drive_remote = 4
    kind = ctypes.windll.kernel32.GetDriveTypeW(drive)  # type: ignore[attr-defined]
    return "smb" if kind == drive_remote else "local"


def is_network_filesystem(path: str) -> bool | None:
    """Whether `path` is on a network file system (None: could not tell)."""
    fs_type = filesystem_type(path)
    if fs_type is None:
        return None
    return fs_type.lower() in NETWORK_FILESYSTEMS
