"""`store.doctor()`: sync folders, network file systems, conflicted copies,
stale temp files and clock skew, each planted for real in a directory tree."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from _layout import objects_dir, snapshots_dir, tmp_dir

import marimo_store._mounts as mounts
from marimo_store import Entry, ExecutionKey, Finding, FsPersistentStore
from marimo_store._entry import now_ms

DAY = 86_400


def codes(findings: list[Finding]) -> set[str]:
    return {finding.code for finding in findings}


def make(root: Path) -> FsPersistentStore:
    store = FsPersistentStore(root, cleanup_on_exit=False)
    store.put(Entry.of(ExecutionKey("doctor", "m"), {"big": "d" * 3000}))
    return store


def test_a_plain_local_store_has_no_warnings(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(home)  # doctor reads marimo's config from the working directory up
    findings = make(tmp_path / "store").doctor()
    assert [f for f in findings if f.severity == "warning"] == []


CLOUD = "Library/CloudStorage"


@pytest.mark.parametrize(
    ("marker", "folder", "tool", "advice"),
    [
        (".dropbox", "", "Dropbox", "com.dropbox.ignored"),
        (".dropbox.cache/", "", "Dropbox", "available offline"),
        (".stfolder/", "", "Syncthing", ".stignore"),
        (".owncloudsync.log", "", "Nextcloud/ownCloud", "ignored files"),
        (f"{CLOUD}/OneDrive-Personal/", f"{CLOUD}/OneDrive-Personal", "OneDrive", "Always keep"),
        (f"{CLOUD}/GoogleDrive-me@x.org/", f"{CLOUD}/GoogleDrive-me@x.org", "Google", "Mirror"),
        ("Library/Mobile Documents/", "Library/Mobile Documents", "iCloud", "Optimize Mac"),
    ],
)
def test_store_inside_a_sync_folder(
    tmp_path: Path, marker: str, folder: str, tool: str, advice: str
) -> None:
    target = tmp_path / marker
    if marker.endswith("/"):
        target.mkdir(parents=True)
    else:
        target.write_text("")
    store = make(tmp_path / folder / "project" / "__marimo__" / "persist")
    (finding,) = [f for f in store.doctor() if f.code == "sync-folder"]
    assert finding.severity == "warning"
    assert tool in finding.message and advice in finding.message
    assert "include_content" in finding.message and "object_grace_seconds" in finding.message
    assert finding.paths == (str((tmp_path / folder).resolve()),)


def test_onedrive_folder_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OneDrive", str(tmp_path / "OneDrive - Contoso"))
    store = make(tmp_path / "OneDrive - Contoso" / "work" / "store")
    assert "sync-folder" in codes(store.doctor())


def test_network_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make(tmp_path / "store")
    # The mount table cannot be faked on a real machine; its parser is tested below.
    monkeypatch.setattr(mounts, "filesystem_type", lambda path: "nfs4")
    findings = {f.code: f for f in store.doctor()}
    assert "nfs4" in findings["network-filesystem"].message
    notification = findings["change-notification"]
    assert notification.severity == "info" and "network file system" in notification.message


def test_mount_table_parsers() -> None:
    mountinfo = (
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "40 22 0:35 / /mnt/team\\040share rw,relatime shared:20 - nfs4 srv:/export rw\n"
        "41 22 0:36 / /home/me/remote rw - fuse.sshfs me@host:/ rw\n"
    )
    assert mounts.type_from_mountinfo(mountinfo, "/mnt/team share/cache") == "nfs4"
    assert mounts.type_from_mountinfo(mountinfo, "/mnt/teams") == "ext4"
    assert mounts.type_from_mountinfo(mountinfo, "/home/me/remote/x") == "fuse.sshfs"
    mount_output = (
        "/dev/disk3s1s1 on / (apfs, sealed, local, read-only, journaled)\n"
        "//me@nas/share on /Volumes/share (smbfs, nodev, nosuid, mounted by me)\n"
    )
    assert mounts.type_from_mount_output(mount_output, "/Volumes/share/store") == "smbfs"
    assert mounts.type_from_mount_output(mount_output, "/Users/me") == "apfs"
    assert mounts.filesystem_type(os.getcwd()) is not None  # this machine's real table


def test_conflicted_copies_are_counted_by_tool(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = make(root)
    store.cleanup()
    (snapshot,) = snapshots_dir(root).glob("*.snap")
    (object_file,) = objects_dir(root).glob("??/*")
    copies = {
        snapshot.with_name(snapshot.stem + " (vm's conflicted copy 2026-11-21).snap"): snapshot,
        object_file.with_name(object_file.name + ".sync-conflict-20261121-101500-ABCDEF1"): (
            object_file
        ),
        object_file.with_name(object_file.name + " 2"): object_file,
        root / "format-LAPTOP.json": root / "format.json",
    }
    for copy, original in copies.items():
        copy.write_bytes(original.read_bytes())
    (finding,) = [f for f in store.doctor() if f.code == "conflicted-copies"]
    assert "Dropbox: 1" in finding.message and "Syncthing: 1" in finding.message
    assert "iCloud: 1" in finding.message and "OneDrive: 1" in finding.message
    assert set(finding.paths) == {str(copy) for copy in copies}


def test_stale_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = make(root)
    old = tmp_dir(root) / "elsewhere-1-0123456789ab-3.tmp"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 2 * DAY, time.time() - 2 * DAY))
    (tmp_dir(root) / "elsewhere-1-0123456789ab-4.tmp").write_bytes(b"young, maybe in use")
    (finding,) = [f for f in store.doctor() if f.code == "stale-temp-files"]
    assert finding.paths == (str(old),)


def test_clock_skew(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = make(root)
    assert "clock-skew" not in codes(store.doctor())
    ahead = ExecutionKey("doctor", "from-the-future", now_ms() + 3_600_000)
    store.put(Entry.of(ahead, {"v": 1}))
    (finding,) = [f for f in store.doctor() if f.code == "clock-skew"]
    assert "60 minutes ahead" in finding.message


USER_STORE = '[cache]\nstore = {type = "fs_persistent"}\n'


def test_marimo_ignoring_the_configured_store_is_a_warning_with_the_fix(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    notebooks = project / "notebooks"
    notebooks.mkdir(parents=True)
    monkeypatch.chdir(notebooks)  # marimo searches from its working directory
    store = make(tmp_path / "store")
    assert "marimo-ignores-store" not in codes(store.doctor())  # nothing configured

    xdg = home / "xdg" / "marimo" / "marimo.toml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text(USER_STORE)
    assert "marimo-ignores-store" not in codes(store.doctor())  # marimo reads it

    project_file = project / ".marimo.toml"
    project_file.write_text('[fs_persister.defaults]\ndurability = "fsync"\n')
    (finding,) = [f for f in store.doctor() if f.code == "marimo-ignores-store"]
    assert finding.severity == "warning"
    assert f"marimo reads {project_file} as its configuration" in finding.message
    assert f"instead of {xdg}" in finding.message
    assert str(project / "pyproject.toml") in finding.message  # where to move the settings
    assert "store=MarimoStore()" in finding.message
    assert finding.paths == (str(project_file), str(xdg))

    project_file.write_text('[cache]\nstore = [{type = "file"}, {type = "fs_persistent"}]\n')
    xdg.write_text("")
    (finding,) = [f for f in store.doctor() if f.code == "marimo-ignores-store"]
    assert f"marimo ignores [cache] store in {project_file}" in finding.message
    assert f"in your user configuration {xdg}" in finding.message

    project_file.unlink()
    (project / "pyproject.toml").write_text(
        '[tool.marimo.cache]\nstore = {type = "fs_persistent"}\n'
    )
    (finding,) = [f for f in store.doctor() if f.code == "marimo-ignores-store"]
    assert "refuses [tool.marimo.cache] store" in finding.message
    assert finding.paths == (str(project / "pyproject.toml"),)


def test_the_users_own_marimo_toml_is_not_a_project_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home / ".marimo.toml").write_text(USER_STORE)
    work = home / "analysis"
    work.mkdir()
    monkeypatch.chdir(work)
    store = make(home / "store")
    assert "marimo-ignores-store" not in codes(store.doctor())
    # But marimo reads ~/.marimo.toml before the XDG file: a store set only
    # in the XDG file is hidden by it.
    (home / ".marimo.toml").write_text('[display]\ntheme = "dark"\n')
    xdg = home / "xdg" / "marimo" / "marimo.toml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text(USER_STORE)
    (finding,) = [f for f in store.doctor() if f.code == "marimo-ignores-store"]
    assert f"marimo reads {home / '.marimo.toml'} as its configuration" in finding.message
    assert f"Fix: move [cache] store into {home / '.marimo.toml'}" in finding.message
