"""`App`: the current App, default Apps, store resolution, exit cleanup."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from _layout import snapshots_dir
from conftest import ModuleLoader, StoreFactory

import marimo_store.app
from marimo_store import (
    App,
    FsPersistentStore,
    InvalidArgumentError,
    LegacyPersistentStore,
)
from marimo_store.app import current_app, default_app, resolve_store

BARE = """
import cache_probe
from marimo_store import persistent_cache

@persistent_cache
def f(x):
    cache_probe.calls.append(x)
    return x * 2
"""


@pytest.fixture(autouse=True)
def fresh_defaults(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Each test starts without default Apps and without user configuration."""
    monkeypatch.setattr(marimo_store.app, "_default_apps", {})
    monkeypatch.setattr(marimo_store.app, "_migration_suggested", set())


def test_the_module_decorator_uses_the_innermost_app_of_each_call(
    load_module: ModuleLoader, probe: types.ModuleType, make_store: StoreFactory, tmp_path: Path
) -> None:
    module = load_module(BARE)
    outer_store, inner_store = make_store(tmp_path / "outer"), make_store(tmp_path / "inner")
    with App(outer_store) as outer:
        assert current_app() is outer
        module.f(1)
        with App(inner_store) as inner:
            assert current_app() is inner
            module.f(1)
        module.f(1)
    assert current_app() is None
    assert probe.calls == [1, 1]  # outer, inner, then outer's entry again
    assert len(outer_store.entries()) == len(inner_store.entries()) == 1
    # Outside any App: the default App beside the module's file.
    module.f(1)
    default = Path(module.__file__).parent / "__marimo__" / "persist"
    assert FsPersistentStore(default).entries()
    assert default_app(str(default.parent.parent)).store.path == str(default)


def test_an_apps_decorator_is_bound_to_it(
    make_store: StoreFactory, tmp_path: Path, probe: types.ModuleType
) -> None:
    app = App(make_store(tmp_path / "bound"))

    @app.persistent_cache(name="bound")
    def g(x: int) -> int:
        probe.calls.append(x)
        return x

    with App(make_store(tmp_path / "other")):
        g(1)
    g(1)
    assert probe.calls == [1]
    assert [m.key.block_id for m in app.store.entries()] == ["bound"]


def test_resolution_without_configuration(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    nothing = tmp_path / "a" / "b"
    nothing.mkdir(parents=True)
    resolved = resolve_store(str(nothing))
    assert isinstance(resolved, FsPersistentStore)
    assert resolved.path == str(nothing / "__marimo__" / "persist")
    assert not (nothing / "__marimo__").exists()  # created on the first put only

    # A parent's __marimo__ (with a store, or marimo's legacy cache) is never used:
    # a folder left in a home or temp directory must not capture the scripts below it.
    (tmp_path / "a" / "__marimo__" / "persist").mkdir(parents=True)
    (tmp_path / "__marimo__" / "cache").mkdir(parents=True)
    assert resolve_store(str(nothing)).path == str(nothing / "__marimo__" / "persist")

    (nothing / "__marimo__" / "cache").mkdir(parents=True)  # marimo's cache beside it: legacy
    with caplog.at_level(logging.INFO, logger="marimo_store"):
        legacy = resolve_store(str(nothing))
        assert isinstance(legacy, LegacyPersistentStore)
        assert legacy.path == str(nothing / "__marimo__" / "cache")
        resolve_store(str(nothing))
    [record] = caplog.records  # one line, however often it resolves
    assert "legacy" in record.getMessage() and "__marimo__/persist" in record.getMessage()

    (nothing / "__marimo__" / "persist").mkdir()  # both: the new store
    assert isinstance(resolve_store(str(nothing)), FsPersistentStore)


def test_resolution_follows_configuration(tmp_path: Path) -> None:
    (tmp_path / "__marimo__" / "cache").mkdir(parents=True)
    (tmp_path / ".marimo.toml").write_text(
        '[fs_persister.defaults]\ndir_path = "elsewhere"\ndurability = "fsync"\n'
    )
    resolved = resolve_store(str(tmp_path))
    assert isinstance(resolved, FsPersistentStore)
    assert (resolved.path, resolved.durability) == (str(tmp_path / "elsewhere"), "fsync")
    explicit = resolve_store(str(tmp_path), {"dir_path": "x", "lock_timeout": 3})
    assert isinstance(explicit, FsPersistentStore)
    assert (explicit.path, explicit.lock_timeout) == (str(tmp_path / "x"), 3)


def test_app_without_a_store_resolves_beside_the_calling_file(load_module: ModuleLoader) -> None:
    module = load_module("""
        from marimo_store import App

        app = App(config={"durability": "fsync"})
    """)
    store = module.app.store
    assert isinstance(store, FsPersistentStore)
    assert store.path == os.path.join(os.path.dirname(module.__file__), "__marimo__", "persist")
    assert store.durability == "fsync"


def test_bad_app_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="config only applies"):
        App(FsPersistentStore(tmp_path / "store"), config={"durability": "fsync"})
    with pytest.raises(InvalidArgumentError, match="store must be"):
        App(str(tmp_path))  # type: ignore[arg-type]


EXIT_SCRIPT = """
import sys
from marimo_store import App, FsPersistentStore

app = App(FsPersistentStore(sys.argv[1]))

@app.persistent_cache
def f(x):
    return x + 1

assert f(1) == 2
"""


def test_the_apps_store_cleans_up_at_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "store"
    subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(path)], check=True, timeout=120)
    assert list(snapshots_dir(path).glob("*.snap"))  # the exit cleanup compacted the log
    assert len(FsPersistentStore(path).entries()) == 1


SWEEP = """
import logging
import sys

from marimo_store import persistent_cache

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

@persistent_cache
def square(x):
    return x * x

assert [square(x) for x in range(3)] == [0, 1, 4]
print(square.cache_info().store)
print(square.explain(2))
"""


def test_a_script_stores_beside_itself_whatever_lies_above(tmp_path: Path, home: Path) -> None:
    # The set-up: a __marimo__ store folder two levels up, and
    # marimo's legacy cache in the parent: neither may capture the script.
    (tmp_path / "__marimo__" / "persist").mkdir(parents=True)
    (tmp_path / "parent" / "__marimo__" / "cache").mkdir(parents=True)
    project = tmp_path / "parent" / "deep" / "proj"
    project.mkdir(parents=True)
    (project / "sweep.py").write_text(SWEEP)
    done = subprocess.run(
        [sys.executable, "sweep.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    expected = str(project / "__marimo__" / "persist")
    store_line, *explanation = done.stdout.splitlines()
    assert store_line == expected  # cache_info().store
    assert f"  store: {expected}" in explanation  # explain()
    assert "__main__.square: hit" in explanation
    # Logged once, on the first write, though three entries were written.
    assert done.stderr.count(f"marimo_store: writing to the store at {expected}") == 1
    assert len(FsPersistentStore(expected).entries()) == 3
    assert list((tmp_path / "__marimo__" / "persist").iterdir()) == []
    assert list((tmp_path / "parent" / "__marimo__" / "cache").iterdir()) == []
