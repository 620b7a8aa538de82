"""The store's layout as tests look at it (docs/format.md §2, §3): one place
for the paths of objects, snapshots, the other directories and quarantined
files, so that no test spells `objects/<xx>/<rest>` itself (three copies of `object_file`, two
different `object_files`, disagreed before). It mirrors
`marimo_store/_format/` from the outside, on purpose without importing it:
a test that reads the files checks the format, not the code's idea of it.
"""

from __future__ import annotations

from pathlib import Path

from marimo_store import ObjectRef


def objects_dir(root: Path) -> Path:
    """The objects directory, `objects/` (docs/format.md §2)."""
    return root / "objects"


def log_dir(root: Path) -> Path:
    """The log directory, `log/`, of every writer's segments."""
    return root / "log"


def snapshots_dir(root: Path) -> Path:
    """The snapshots directory, `snapshots/`."""
    return root / "snapshots"


def snapshot_path(root: Path, snapshot_id: str) -> Path:
    """Where the snapshot `snapshot_id` lives: `snapshots/<id>.snap`."""
    return snapshots_dir(root) / f"{snapshot_id}.snap"


def tmp_dir(root: Path) -> Path:
    """Where writers keep their temp files, `tmp/`."""
    return root / "tmp"


def local_dir(root: Path) -> Path:
    """This machine's own files (ledgers, the dangling table), `local/`."""
    return root / "local"


def locks_dir(root: Path) -> Path:
    """The lock files, `locks/`."""
    return root / "locks"


def object_path(root: Path, object_id: str) -> Path:
    """Where the object `object_id` lives: `objects/<id[:2]>/<id[2:]>`."""
    return objects_dir(root) / object_id[:2] / object_id[2:]


def object_file(root: Path, ref: ObjectRef) -> Path:
    """Where the object a reference names lives."""
    return object_path(root, ref.id)


def object_files(root: Path) -> list[Path]:
    """Every file under `objects/`, sorted (none when the directory does not exist)."""
    directory = objects_dir(root)
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.rglob("*") if path.is_file())


def object_ids(root: Path) -> set[str]:
    """The ids of the object files on disk (canonical names only)."""
    return {
        path.parent.name + path.name
        for path in objects_dir(root).glob("??/*")
        if path.is_file() and len(path.parent.name + path.name) in (32, 48)
    }


def snapshot_names(root: Path) -> set[str]:
    """The file names of the snapshots."""
    return {path.name for path in snapshots_dir(root).glob("*.snap")}


def quarantine_dir(root: Path) -> Path:
    """Where damaged files are moved (docs/format.md §3.6)."""
    return root / "quarantine"
