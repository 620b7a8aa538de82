"""The store's layout as tests look at it (docs/format.md §2, §3): one place
for the paths of objects, snapshots, the other directories and quarantined
files, so that no test spells `objects/<xx>/<rest>` itself (three copies
of `object_file`, two different `object_files`, disagreed before). It mirrors
`marimo_store/_format/` from the outside, on purpose without importing it:
a test that reads the files checks the format, not the code's idea of it.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from marimo_store import ObjectRef

DIRECTORIES = ("objects", "log", "snapshots", "tmp", "local", "locks", "quarantine")
"""The directories of a store (docs/format.md §2)."""


def layout_dir(root: Path, name: str) -> Path:
    """The directory `name` of the store at `root` (one of `DIRECTORIES`)."""
    if name not in DIRECTORIES:
        raise ValueError(f"{name!r} is no directory of the layout")
    return root / name


objects_dir = partial(layout_dir, name="objects")
"""`objects/`: every object, under the first two digits of its id."""
log_dir = partial(layout_dir, name="log")
"""`log/`: every writer's segments."""
snapshots_dir = partial(layout_dir, name="snapshots")
"""`snapshots/`: the snapshot files."""
tmp_dir = partial(layout_dir, name="tmp")
"""`tmp/`: where writers keep their temp files."""
local_dir = partial(layout_dir, name="local")
"""`local/`: this machine's own files (ledgers, the dangling table)."""
locks_dir = partial(layout_dir, name="locks")
"""`locks/`: the lock files."""
quarantine_dir = partial(layout_dir, name="quarantine")
"""`quarantine/`: where damaged files are moved (docs/format.md §3.6)."""


def snapshot_path(root: Path, snapshot_id: str) -> Path:
    """Where the snapshot `snapshot_id` lives: `snapshots/<id>.snap`."""
    return snapshots_dir(root) / f"{snapshot_id}.snap"


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
