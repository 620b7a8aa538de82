"""Real marimo (the `marimo` package from PyPI), real notebooks, real processes.

Each notebook under marimo_notebooks/ appends the name of every cached
computation that actually runs to a counter file, so "the second run hits"
is a fact about the counter, not about timing. Every run gets its own HOME
and XDG directories: marimo's user configuration is a file there, written
by the test (marimo would otherwise create one in the real home). The
notebooks run in a directory inside that HOME, where marimo's search for a
`.marimo.toml` stops, so nothing above it (the system temp directory) counts.

What these tests observe about marimo 0.25 itself is stated in
docs/marimo.md: `cache.store` from the user configuration reaches the
pickle and json loaders but not the lazy one; a workspace `.marimo.toml`
and a notebook's script header lose it; from `pyproject.toml` the json
loader uses it and the pickle loader refuses it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _layout import log_dir, object_files, object_path

from marimo_store import FsPersistentStore, migrate_marimo_cache

NOTEBOOKS = Path(__file__).parent / "marimo_notebooks"
EXAMPLES = Path(__file__).parents[2] / "examples" / "notebooks"
RUN_TIMEOUT = 180
VERIFICATION_OFF = '[cache]\nverification = "off"\n'
"""marimo's lazy loader verifies signatures; without the `cryptography`
package (not installed here) it can only cache with verification off."""
ALL_BLOCKS = ["numbers", "summarize", "json_block", "lazy_block"]


class Workspace:
    """A directory with copies of notebooks, a HOME, and a counter file."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.home = home
        self.counter = root / "counter"
        self.store = root / "store"
        self.stderr = ""
        """What the last run wrote to stderr (marimo logs there)."""
        (self.home / ".config" / "marimo").mkdir(parents=True)
        self.user_config(VERIFICATION_OFF)

    def user_config(self, text: str) -> None:
        """marimo's user configuration: `$XDG_CONFIG_HOME/marimo/marimo.toml`."""
        (self.home / ".config" / "marimo" / "marimo.toml").write_text(text)

    def notebook(self, name: str, source: Path = NOTEBOOKS) -> Path:
        path = self.root / name
        shutil.copy(source / name, path)
        return path

    def environment(self, **env: str) -> dict[str, str]:
        """The environment of a run: this workspace's HOME and XDG directories."""
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MARIMO", "XDG_"))},
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_STATE_HOME": str(self.home / ".local" / "state"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "COUNTER": str(self.counter),
            **env,
        }

    def doctor(self) -> subprocess.CompletedProcess[str]:
        """`marimo-store doctor` in the workspace, as the user would run it."""
        return subprocess.run(
            [sys.executable, "-m", "marimo_store", "doctor"],
            cwd=self.root,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )

    def run(self, notebook: Path, *, export: bool = False, **env: str) -> list[str]:
        """Run `notebook` (`python notebook.py`, or `marimo export html`);
        return the cached computations that ran."""
        self.counter.write_text("")
        environment = self.environment(**env)
        if export:
            command = [sys.executable, "-m", "marimo", "export", "html", str(notebook)]
            command += ["-o", str(notebook.with_suffix(".html"))]
        else:
            command = [sys.executable, str(notebook)]
        done = subprocess.run(
            command,
            cwd=self.root,
            env=environment,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
        self.stderr = done.stderr
        return self.counter.read_text().split("\n")[:-1]

    def blocks_in(self, path: Path) -> dict[str, list[str]]:
        """Block of every entry in the store at `path` -> the keys it holds."""
        found: dict[str, list[str]] = {}
        for metadata in FsPersistentStore(path).entries():
            found.setdefault(metadata.key.block_id, []).extend(metadata.variables)
        return found

    def marimo_cache(self) -> list[str]:
        """The blocks in marimo's own `FileStore` beside the notebooks."""
        cache = self.root / "__marimo__" / "cache"
        return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


@pytest.fixture
def workspace(tmp_path: Path, home: Path) -> Workspace:
    return Workspace(tmp_path, home)


def test_script_runs_hit_the_second_time(workspace: Workspace) -> None:
    notebook = workspace.notebook("blocks.py")
    store = str(workspace.store)
    assert sorted(workspace.run(notebook, STORE=store)) == sorted(ALL_BLOCKS)
    assert workspace.run(notebook, STORE=store) == []

    blocks = workspace.blocks_in(workspace.store)
    assert sorted(blocks) == sorted(ALL_BLOCKS)
    # The lazy entry is one entry: its manifest and its blob together.
    lazy = blocks["lazy_block"]
    assert len(lazy) == 2
    assert {key.rsplit(".", 1)[1] for key in lazy} == {"jsonl", "npy"}
    assert workspace.marimo_cache() == []


def test_export_html_runs_hit_the_second_time(workspace: Workspace) -> None:
    notebook = workspace.notebook("blocks.py")
    store = str(workspace.store)
    assert sorted(workspace.run(notebook, export=True, STORE=store)) == sorted(ALL_BLOCKS)
    assert workspace.run(notebook, export=True, STORE=store) == []
    assert "grid" in notebook.with_suffix(".html").read_text()
    blocks = workspace.blocks_in(workspace.store)
    assert set(ALL_BLOCKS) < set(blocks)
    # marimo's kernel also keeps its record of the notebook's entries in the
    # store, under a root key (`blocks-<digest>.json`): a block of its own.
    (record,) = set(blocks) - set(ALL_BLOCKS)
    assert record.startswith("blocks-")
    assert record.endswith(".json")


def test_the_store_selected_by_the_user_configuration_alone(workspace: Workspace) -> None:
    notebook = workspace.notebook("blocks.py")
    workspace.user_config(
        VERIFICATION_OFF
        + f'store = {{type = "fs_persistent", args = {{path = "{workspace.store}"}}}}\n'
    )
    assert sorted(workspace.run(notebook)) == sorted(ALL_BLOCKS)
    assert workspace.run(notebook) == []
    # The pickle and json loaders use the configured store; marimo's lazy
    # loader always uses its own FileStore (it hit there).
    assert sorted(workspace.blocks_in(workspace.store)) == ["json_block", "numbers", "summarize"]
    assert workspace.marimo_cache() == ["lazy_block"]


def test_a_store_in_a_workspace_marimo_toml_is_ignored(workspace: Workspace) -> None:
    notebook = workspace.notebook("blocks.py")
    # Found by walking up from the working directory, it becomes marimo's user
    # configuration, minus `cache.store` (and `cache.verification`).
    (workspace.root / ".marimo.toml").write_text(
        f'[cache]\nstore = {{type = "fs_persistent", args = {{path = "{workspace.store}"}}}}\n'
    )
    assert "numbers" in workspace.run(notebook)
    assert "Ignored cache.store from a configuration file" in workspace.stderr
    assert not workspace.store.exists()
    assert {"numbers", "summarize", "json_block"} <= set(workspace.marimo_cache())


def test_a_store_in_pyproject_reaches_json_but_not_pickle(workspace: Workspace) -> None:
    notebook = workspace.notebook("blocks.py")
    (workspace.root / "pyproject.toml").write_text(
        "[tool.marimo.cache]\n"
        f'store = {{type = "fs_persistent", args = {{path = "{workspace.store}"}}}}\n'
    )
    assert sorted(workspace.run(notebook)) == sorted(ALL_BLOCKS)
    assert "Ignoring cache.store from an untrusted config layer" in workspace.stderr
    # The unsigned pickle loader refuses a store from a file that travels
    # with the code and falls back to its FileStore; json loads no code.
    assert list(workspace.blocks_in(workspace.store)) == ["json_block"]
    assert workspace.marimo_cache() == ["lazy_block", "numbers", "summarize"]


def test_a_store_in_the_notebooks_script_header_is_ignored(workspace: Workspace) -> None:
    notebook = workspace.notebook("blocks.py")
    header = (
        "# /// script\n"
        "# [tool.marimo.cache]\n"
        f'# store = {{type = "fs_persistent", args = {{path = "{workspace.store}"}}}}\n'
        "# ///\n"
    )
    notebook.write_text(header + notebook.read_text())
    assert sorted(workspace.run(notebook)) == sorted(ALL_BLOCKS)
    # PEP 723 metadata may not set `cache` at all.
    assert "tool.marimo.cache in script metadata is ignored" in workspace.stderr
    assert not workspace.store.exists()
    assert workspace.marimo_cache() == sorted(ALL_BLOCKS)


def test_the_same_array_in_two_blocks_is_one_copy_on_disk(workspace: Workspace) -> None:
    notebook = workspace.notebook("same_array.py")
    store = str(workspace.store)
    assert workspace.run(notebook, STORE=store) == ["first", "second", "equal=True"]
    twenty_mb = 2_500_000 * 8
    sizes = sorted(p.stat().st_size for p in object_files(workspace.store))
    assert sizes[-1] == twenty_mb
    assert twenty_mb <= sum(sizes) < twenty_mb + 1_000_000
    shared = {
        ref.buffers[0].id
        for metadata in FsPersistentStore(workspace.store).entries()
        for ref in metadata.variables.values()
    }
    assert len(shared) == 1
    # Both blocks restore from the one copy.
    assert workspace.run(notebook, STORE=store) == ["equal=True"]


def test_cleanup_leaves_one_complete_entry_that_still_hits(workspace: Workspace) -> None:
    notebook = workspace.notebook("one_input.py")
    store = str(workspace.store)
    for level in range(1, 6):
        assert workspace.run(notebook, STORE=store, INPUT=str(level)) == [f"one_input {level}.0"]
    # Each run cleaned up at exit, keeping one entry per block.
    (entry,) = FsPersistentStore(workspace.store).entries()
    assert entry.key.block_id == "one_input"
    assert sorted(key.rsplit(".", 1)[1] for key in entry.variables) == ["jsonl", "npy", "npy"]
    assert FsPersistentStore(workspace.store).lookup(entry.key) == entry
    # Object GC leaves exactly the files of the kept entry.
    FsPersistentStore(workspace.store, object_grace_seconds=0).cleanup(include_content=True)
    kept = {
        object_path(workspace.store, ref.id) for ref in entry.objects().values() if not ref.inline
    }
    assert len(kept) >= 2  # the two arrays, at least
    assert set(object_files(workspace.store)) == kept
    assert workspace.run(notebook, STORE=store, INPUT="5") == []
    assert workspace.run(notebook, STORE=store, INPUT="1") == ["one_input 1.0"]


def test_a_migrated_marimo_cache_hits_through_marimo_store(workspace: Workspace) -> None:
    notebook = workspace.notebook("blocks.py")
    assert sorted(workspace.run(notebook)) == sorted(ALL_BLOCKS)  # marimo's FileStore
    cache = workspace.root / "__marimo__" / "cache"
    report = migrate_marimo_cache(cache, workspace.store)
    assert report.entries == len(ALL_BLOCKS)
    assert report.skipped == ()
    shutil.rmtree(cache)
    assert workspace.run(notebook, STORE=str(workspace.store)) == []
    assert workspace.marimo_cache() == []


@pytest.mark.parametrize("export", [False, True], ids=["script", "export-html"])
def test_our_decorator_on_functions_defined_in_cells(workspace: Workspace, export: bool) -> None:
    notebook = workspace.notebook("decorated.py")
    store = str(workspace.store)
    assert sorted(workspace.run(notebook, export=export, STORE=store)) == ["later", "scaled_sum"]
    assert workspace.run(notebook, export=export, STORE=store) == []
    blocks = {m.key.block_id for m in FsPersistentStore(store).entries()}
    assert len(blocks) == 3  # helper, scaled_sum, later: one block each
    if not export:
        # A comment changes nothing; a global the function reads does.
        source = notebook.read_text()
        notebook.write_text(
            source.replace("    @cache\n    def helper", "    # note\n    @cache\n    def helper")
        )
        assert workspace.run(notebook, STORE=store) == []
        notebook.write_text(source.replace("scale = 3.0", "scale = 3.0 + 0.0 * 1"))
        assert workspace.run(notebook, STORE=store) == []  # same value: same key
        notebook.write_text(
            source.replace("scale = 3.0", "scale = 4.0").replace(
                "assert total == 3.0", "assert total == 4.0"
            )
        )
        assert workspace.run(notebook, STORE=store) == ["scaled_sum"]
        notebook.write_text(source)
    # Without a store given: the default App stores beside the notebook.
    assert sorted(workspace.run(notebook, export=export)) == ["later", "scaled_sum"]
    assert workspace.run(notebook, export=export) == []
    assert log_dir(workspace.root / "__marimo__" / "persist").is_dir()


def test_the_examples_run_headless(workspace: Workspace) -> None:
    pipeline = workspace.notebook("cached_pipeline.py", EXAMPLES)
    browser = workspace.notebook("store_browser.py", EXAMPLES)
    workspace.run(pipeline)
    persist = workspace.root / "__marimo__" / "persist"
    stored = [m.key for m in FsPersistentStore(persist).entries()]
    assert sorted(key.block_id for key in stored) == ["daily_summary", "daily_summary", "simulate"]
    workspace.run(pipeline)  # hits: nothing new is stored
    assert [m.key for m in FsPersistentStore(persist).entries()] == stored
    workspace.run(browser)
    decorated = workspace.notebook("decorated_functions.py", EXAMPLES)
    workspace.run(decorated)
    before = len(FsPersistentStore(persist).entries())
    assert before == 3 + 6  # three entries above; noisy_samples and fit_line x 3 seeds
    workspace.run(decorated)
    assert len(FsPersistentStore(persist).entries()) == before


def test_a_project_marimo_toml_with_a_user_store_warns_and_each_fix_works(
    workspace: Workspace,
) -> None:
    # The set-up .marimo.toml.example suggests: project settings in a project
    # .marimo.toml, the store selected in the user's configuration.
    workspace.user_config(VERIFICATION_OFF + 'store = {type = "fs_persistent"}\n')
    project_file = workspace.root / ".marimo.toml"
    project_file.write_text('[fs_persister.defaults]\ndir_path = "project-store"\n')
    project_store = workspace.root / "project-store"
    notebook = workspace.notebook("blocks.py")
    # marimo reads the project file as its configuration and never sees the
    # user's: its own FileStore gets everything, and marimo says nothing.
    assert sorted(workspace.run(notebook)) == sorted(ALL_BLOCKS)
    assert workspace.marimo_cache() == sorted(ALL_BLOCKS)
    assert not project_store.exists()
    assert "fs_persistent" not in workspace.stderr

    doctor = workspace.doctor()
    assert doctor.returncode == 1, doctor.stderr
    assert "marimo-ignores-store" in doctor.stdout
    assert f"marimo reads {project_file} as its configuration" in doctor.stdout
    assert "store=MarimoStore()" in doctor.stdout and "[tool.marimo]" in doctor.stdout
    # The first use of marimo_store's own decorator in the project says it too.
    decorated = workspace.notebook("decorated.py")
    workspace.run(decorated)
    assert workspace.stderr.count("mo.persistent_cache falls back") == 1  # once per process
    assert f"{project_file} as its configuration" in workspace.stderr

    shutil.rmtree(project_store)  # where the decorator stored, by the project's settings

    # Fix 1: the notebook selects the store; the project's settings apply.
    shutil.rmtree(workspace.root / "__marimo__")
    assert sorted(workspace.run(notebook, STORE="default")) == sorted(ALL_BLOCKS)
    # The lazy loader verifies signatures, and the user's `verification = "off"`
    # is hidden with the rest of the user's file: it neither reads nor writes
    # a store other than marimo's FileStore without a signing key (docs/marimo.md).
    assert workspace.run(notebook, STORE="default") == ["lazy_block"]
    assert sorted(workspace.blocks_in(project_store)) == ["json_block", "numbers", "summarize"]
    assert workspace.marimo_cache() == []

    # Fix 2, the one doctor names: the project's settings move to
    # pyproject.toml, where marimo_store reads them and marimo does not hide
    # the user's configuration. The configured store is used again, with them.
    shutil.rmtree(project_store)
    project_file.unlink()
    (workspace.root / "pyproject.toml").write_text(
        '[project]\nname = "analysis"\n\n'
        '[tool.marimo.fs_persister.defaults]\ndir_path = "project-store"\n'
    )
    assert sorted(workspace.run(notebook)) == sorted(ALL_BLOCKS)
    assert workspace.run(notebook) == []
    assert workspace.run(notebook, export=True) == []
    assert {"numbers", "summarize", "json_block"} <= set(workspace.blocks_in(project_store))
    assert not {"numbers", "summarize", "json_block"} & set(workspace.marimo_cache())
    assert "lazy_block" in workspace.marimo_cache()  # marimo's lazy loader: always its own
    doctor = workspace.doctor()
    assert "marimo-ignores-store" not in doctor.stdout, doctor.stdout
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
