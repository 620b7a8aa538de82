"""The suite does not depend on what lies above its temp folders.

A notebook run in the system temp directory or in the home directory leaves
a `__marimo__/` folder there, and users keep a `.marimo.toml` in either.
This test plants both (with settings that would change every default store)
in a temp directory and a home of its own, and runs the tests that resolve
default stores, configuration files and homes, real marimo included, in a
pytest subprocess whose system temp directory (`TMPDIR`) and `HOME` are
those. They must pass, and nothing planted may change.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent
RELEVANT = [
    "integration/test_app.py",
    "integration/test_config.py",
    "integration/test_marimo_plugin.py",
    "maintenance/test_migrate.py",
    "store/test_store_directory.py",
    "maintenance/test_doctor.py",
    "store/test_signing.py",
    "cli/test_cli.py::test_the_store_is_found_like_app_does",
    "cli/test_cli.py::test_migrate_imports_marimo_cache_beside_it",
    # Real marimo: a script run and an export, with the user's store.
    "integration/test_marimo_notebooks.py::test_our_decorator_on_functions_defined_in_cells",
    "integration/test_marimo_notebooks.py::test_the_store_selected_by_the_user_configuration_alone",
    "integration/test_marimo_notebooks.py::test_a_project_marimo_toml_with_a_user_store_warns_and_each_fix_works",
]
PLANTED_CONFIG = """\
[cache]
store = {type = "fs_persistent", args = {path = "planted-marimo-store"}}
verification = "off"

[fs_persister.defaults]
dir_path = "planted-store"
durability = "fsync"

[fs_persister.default_cleanup_strategy]
max_entries_per_block = 1
"""


def plant(directory: Path) -> None:
    """What a notebook run and a user leave behind in `directory`."""
    for part in ("persist/log", "persist/objects", "cache/block"):
        (directory / "__marimo__" / part).mkdir(parents=True)
    (directory / "__marimo__" / "cache" / "block" / "C_planted.pickle").write_bytes(b"\x80\x05N.")
    (directory / ".marimo.toml").write_text(PLANTED_CONFIG)
    (directory / ".config" / "marimo").mkdir(parents=True)
    (directory / ".config" / "marimo" / "marimo.toml").write_text(PLANTED_CONFIG)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` but pytest's own temp folders."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.relative_to(directory).parts[0].startswith("pytest-of-")
    }


def test_the_suite_passes_under_a_planted_marimo_folder_and_config(tmp_path: Path) -> None:
    system_temp, home = tmp_path / "system-temp", tmp_path / "home"
    for directory in (system_temp, home):
        plant(directory)
    before = {directory: snapshot(directory) for directory in (system_temp, home)}
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MARIMO", "XDG_"))},
        "TMPDIR": str(system_temp),
        "HOME": str(home),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"]
        + [f"tests/{test}" for test in RELEVANT],
        cwd=TESTS.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
    # The tests really ran below the planted folders.
    assert any(system_temp.glob("pytest-of-*/pytest-*/test_*"))
    assert {directory: snapshot(directory) for directory in (system_temp, home)} == before
