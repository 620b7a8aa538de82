"""Shared fixtures: every test gets its own store directory under tmp_path."""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import sys
import tempfile
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from marimo_store import FsPersistentStore, LegacyPersistentStore, MemoryStore, TieredStore

StoreFactory = Callable[..., FsPersistentStore]
ModuleLoader = Callable[..., types.ModuleType]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Where the test's store lives (not created until the first put)."""
    return tmp_path / "store"


@pytest.fixture
def make_store(store_path: Path) -> Iterator[StoreFactory]:
    """Open stores on `store_path` (or another path); all are closed afterwards."""
    opened: list[FsPersistentStore] = []

    def make(path: Path | None = None, **options: Any) -> FsPersistentStore:
        store = FsPersistentStore(path or store_path, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def make_quarantining_store(make_store: StoreFactory) -> StoreFactory:
    """`make_store` with `object_grace_seconds=0`: a read moves a damaged
    object to quarantine at once (a young one otherwise stays in place: it
    may be a sync tool's copy still arriving)."""

    def make(path: Path | None = None, **options: Any) -> FsPersistentStore:
        return make_store(path, **{"object_grace_seconds": 0, **options})

    return make


@pytest.fixture
def store(make_store: StoreFactory) -> FsPersistentStore:
    """A store with default options."""
    return make_store()


@pytest.fixture
def load_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleLoader:
    """Import `source` as module `name` from a file of its own.

    Each call writes a new directory (`v0/`, `v1/`, ...), so importing an
    edited version of a module never meets a stale `.pyc` or line cache.
    """
    versions = itertools.count()

    def load(source: str, name: str = "cached_module") -> types.ModuleType:
        directory = tmp_path / f"v{next(versions)}"
        directory.mkdir()
        path = directory / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch, store: FsPersistentStore) -> types.ModuleType:
    """Module `cache_probe`: test modules record their calls in `calls` and
    find the store in `store`. Modules count in a key by name only, so
    appending to `calls` does not change any key."""
    module = types.ModuleType("cache_probe")
    module.calls = []  # type: ignore[attr-defined]
    module.store = store  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cache_probe", module)
    return module


@pytest.fixture
def tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own directory, inside a home of its own (pytest's
    `tmp_path` is that home), and the working directory while it runs.

    Everything that walks up from a test's files or from the working
    directory (`.marimo.toml` lookup, marimo's own configuration search,
    the default store's `__marimo__/`) stops at the home directory, so
    nothing in the system temp directory above it (a `__marimo__` folder, a
    `.marimo.toml` left by a notebook run there), nothing in the checkout
    the suite runs from and nothing in the real user's home can change what
    a test sees; nor can a `MARIMO_*` or XDG variable of the shell that ran
    pytest (the suite's own size knobs, `MARIMO_STORE_*`, are read before
    any test starts). tests/test_hermetic.py plants such files and runs the
    relevant tests under them.
    """
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for variable in list(os.environ):
        if variable.startswith("MARIMO") or variable in _OTHER_XDG:
            monkeypatch.delenv(variable)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


_OTHER_XDG = ("XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME")


@pytest.fixture(autouse=True)
def own_home(tmp_path: Path) -> None:
    """Every test runs with its own HOME, XDG directories and working
    directory, and no `MARIMO_*` variables (see `tmp_path`)."""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The test's empty home (its XDG config directory is `home / "xdg"`):
    the real user's files never count. `tmp_path` lies inside it."""
    return Path(os.environ["HOME"])


STORE_KINDS = ("fs", "legacy", "memory", "tiered")
"""Every kind of store that has named objects, handles and a version policy."""


def open_store(kind: str, root: Path) -> Any:
    """A store of `kind` in `root` (the tiered one: memory in front of a directory)."""
    if kind == "fs":
        return FsPersistentStore(root / "fs")
    if kind == "legacy":
        return LegacyPersistentStore(root / "legacy")
    if kind == "memory":
        return MemoryStore("64MB")
    return TieredStore([MemoryStore("64MB"), FsPersistentStore(root / "tiered")])


@pytest.fixture(params=STORE_KINDS)
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Each kind of store in turn (see `open_store`), closed afterwards."""
    store = open_store(request.param, tmp_path)
    yield store
    store.close()


_SESSION_HOME: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """A home of the session's own from the start, before any test module is
    imported: what imports write there (marimo opens its log file under
    `~/.cache`) never reaches the user's home. Each test then gets its own
    (see `tmp_path`)."""
    home = tempfile.mkdtemp(prefix="marimo-store-tests-home-")
    _SESSION_HOME.append(home)
    os.environ["HOME"] = home
    for variable in ("XDG_CONFIG_HOME", *_OTHER_XDG):
        os.environ.pop(variable, None)


def pytest_unconfigure(config: pytest.Config) -> None:
    for home in _SESSION_HOME:
        shutil.rmtree(home, ignore_errors=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Sizes of the long randomised tests: small by default (CI), larger on request."""
    parser.addoption(
        "--schedules",
        type=int,
        default=int(os.environ.get("MARIMO_STORE_SYNC_SCHEDULES", "300")),
        help="sync simulator schedules with replicas in this process (tests/sync)",
    )
    parser.addoption(
        "--schedule-seed",
        type=int,
        default=int(os.environ.get("MARIMO_STORE_SYNC_SEED", "0")),
        help="the first schedule's seed (later ones count up from it)",
    )
    parser.addoption(
        "--process-schedules",
        type=int,
        default=int(os.environ.get("MARIMO_STORE_SYNC_PROCESS_SCHEDULES", "10")),
        help="sync simulator schedules with each replica in a worker process",
    )
    parser.addoption(
        "--mutations",
        type=int,
        default=int(os.environ.get("MARIMO_STORE_FUZZ_MUTATIONS", "600")),
        help="mutations of the corruption fuzzer (tests/survival/test_fuzz.py)",
    )
    parser.addoption(
        "--git-rounds",
        type=int,
        default=int(os.environ.get("MARIMO_STORE_GIT_ROUNDS", "20")),
        help=(
            "rounds of put, cleanup and git pull in two clones (tests/survival/test_real_tools.py)"
        ),
    )
    parser.addoption(
        "--rsync-rounds",
        type=int,
        default=int(os.environ.get("MARIMO_STORE_RSYNC_ROUNDS", "10")),
        help="rounds of rsync with log/ before objects/ (tests/survival/test_late_not_lost.py)",
    )
    parser.addoption(
        "--flight-runs",
        type=int,
        default=int(os.environ.get("MARIMO_STORE_FLIGHT_RUNS", "1")),
        help="runs of 16 processes x 20 keys in tests/cache/test_single_flight.py",
    )
