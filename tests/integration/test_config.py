"""Configuration files: where they are found, which wins, and every error."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from marimo_store import ConfigError, DefaultCleanupStrategy, FsPersistentStore
from marimo_store.config import (
    NO_LIMIT,
    config_files,
    read_settings,
    store_defaults,
    strategy_defaults,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

EXAMPLE = Path(__file__).parents[2] / ".marimo.toml.example"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_nearest_file_wins_key_by_key_then_explicit_over_all(tmp_path: Path, home: Path) -> None:
    user = write(
        home / ".marimo.toml",
        """
        [fs_persister.defaults]
        durability = "fsync"
        lock_timeout = 1
        refresh_interval = 5
        inline_threshold = 7
        [fs_persister.default_cleanup_strategy]
        max_entries_per_block = 9
        """,
    )
    pyproject = write(
        tmp_path / "project" / "pyproject.toml",
        """
        [project]
        name = "x"
        [tool.marimo.fs_persister.defaults]
        lock_timeout = 2
        refresh_interval = 6
        dir_path = "cache_here"
        """,
    )
    nearest = write(
        tmp_path / "project" / "sub" / ".marimo.toml",
        """
        [fs_persister.defaults]
        refresh_interval = 7
        [fs_persister.default_cleanup_strategy]
        max_total_content_size = "1GB"
        max_entry_age_days = -1
        """,
    )
    notebook_dir = tmp_path / "project" / "sub" / "notebooks"
    notebook_dir.mkdir()
    assert config_files(str(notebook_dir)) == [
        (str(nearest), "fs_persister"),
        (str(pyproject), "tool.marimo.fs_persister"),
        (str(user), "fs_persister"),
    ]
    settings = read_settings(str(notebook_dir))
    assert settings.store_options == {
        "refresh_interval": 7,  # the nearest .marimo.toml
        "lock_timeout": 2,  # pyproject.toml, nearer than the user's file
        "durability": "fsync",  # only the user's file sets it
        "inline_threshold": 7,
    }
    assert settings.dir_path == str(tmp_path / "project" / "cache_here")  # beside its file
    assert settings.cleanup_strategy == DefaultCleanupStrategy(
        max_entries_per_block=9, max_total_content_size="1GB", max_entry_age_days=None
    )
    assert settings.sources == (str(nearest), str(pyproject), str(user))
    explicit = read_settings(
        str(notebook_dir), {"refresh_interval": 0, "max_entries_per_block": None}
    )
    assert explicit.store_options["refresh_interval"] == 0
    assert explicit.store_options["lock_timeout"] == 2
    assert explicit.cleanup_strategy is not None
    assert explicit.cleanup_strategy.max_entries_per_block is None
    store = explicit.open_store("unused")
    assert store.path == settings.dir_path
    assert (store.durability, store.lock_timeout, store.refresh_interval) == ("fsync", 2, 0)
    assert store.cleanup_strategy == explicit.cleanup_strategy


def test_a_nearer_pyproject_wins_and_one_directory_prefers_marimo_toml(
    tmp_path: Path, home: Path
) -> None:
    write(tmp_path / "a" / ".marimo.toml", "[fs_persister.defaults]\nlock_timeout = 1\n")
    write(
        tmp_path / "a" / "b" / "pyproject.toml",
        "[tool.marimo.fs_persister.defaults]\nlock_timeout = 2\n",
    )
    assert read_settings(str(tmp_path / "a" / "b")).store_options == {"lock_timeout": 2}
    write(tmp_path / "a" / "b" / ".marimo.toml", "[fs_persister.defaults]\nlock_timeout = 3\n")
    assert read_settings(str(tmp_path / "a" / "b")).store_options == {"lock_timeout": 3}


def test_the_xdg_file_when_there_is_no_home_file(tmp_path: Path, home: Path) -> None:
    xdg = write(
        home / "xdg" / "marimo" / "marimo.toml", "[fs_persister.defaults]\nlock_timeout = 4\n"
    )
    settings = read_settings(str(tmp_path))
    assert settings.store_options == {"lock_timeout": 4}
    assert settings.sources == (str(xdg),)
    write(home / ".marimo.toml", "[fs_persister.defaults]\nlock_timeout = 5\n")
    assert read_settings(str(tmp_path)).store_options == {"lock_timeout": 5}


def test_files_without_settings_change_nothing(tmp_path: Path, home: Path) -> None:
    write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n[tool.marimo]\nwidth = 3\n')
    write(tmp_path / ".marimo.toml", "[display]\ntheme = 'dark'\n")
    settings = read_settings(str(tmp_path))
    assert (settings.dir_path, dict(settings.store_options)) == (None, {})
    assert (settings.cleanup_strategy, settings.sources) == (None, ())


def test_the_example_documents_every_key_with_its_default(tmp_path: Path) -> None:
    with open(EXAMPLE, "rb") as file:
        example = tomllib.load(file)["fs_persister"]
    assert set(example) == {"defaults", "default_cleanup_strategy"}
    defaults = dict(example["defaults"])
    assert defaults.pop("dir_path") == "__marimo__/persist"
    # Options only a user's file may set are shown commented out: a project
    # that copies the example must not get a ConfigError.
    user_level = {key: store_defaults()[key] for key in ("signing_key", "trusted_signers")}
    assert defaults == {k: v for k, v in store_defaults().items() if k not in user_level}
    assert all(f"\n# {key} = " in EXAMPLE.read_text() for key in user_level)
    # ... and those are every option a store carries but its path and strategy.
    options = set(FsPersistentStore(tmp_path).config) - {"path", "cleanup_strategy"}
    assert options == store_defaults().keys()
    strategy = {
        key: None if value == NO_LIMIT else value
        for key, value in example["default_cleanup_strategy"].items()
    }
    assert strategy == strategy_defaults()


def test_the_example_itself_is_a_valid_configuration(tmp_path: Path, home: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / ".marimo.toml")  # as a project's file
    settings = read_settings(str(tmp_path))
    user_level = ("signing_key", "trusted_signers")
    assert settings.store_options == {
        k: v for k, v in store_defaults().items() if k not in user_level
    }
    assert settings.cleanup_strategy == DefaultCleanupStrategy()
    assert settings.dir_path == str(tmp_path / "__marimo__" / "persist")


def _error(tmp_path: Path, text: str, name: str = ".marimo.toml") -> str:
    path = write(tmp_path / name, text)
    with pytest.raises(ConfigError) as caught:
        read_settings(str(tmp_path))
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message  # names the file
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[fs_persister\n", "not valid TOML"),
        ("fs_persister = 3\n", "[fs_persister] must be a table"),
        ("[fs_persister.defaultz]\nx = 1\n", "unknown key 'defaultz' in [fs_persister]; "
         "allowed: defaults, default_cleanup_strategy"),
        ("[fs_persister]\ndefaults = 1\n", "[fs_persister.defaults] must be a table"),
        ("[fs_persister.defaults]\nlock_timout = 1\n", "[fs_persister.defaults]: unknown key "
         "'lock_timout'; allowed keys: allow_other_files, auto_variables_format, cleanup_on_exit, "
         "cloudpickle_fallback, dir_path, durability"),
        ("[fs_persister.defaults]\ndurability = 'sometimes'\n", "[fs_persister.defaults]: "
         "durability must be one of 'flush', 'fsync', got 'sometimes'"),
        ("[fs_persister.defaults]\nobject_id_mode = 1\n", "object_id_mode must be one of "
         "'deduplication', 'execution_key_qualified', got 1"),
        ("[fs_persister.defaults]\nauto_variables_format = 'yaml'\n",
         "auto_variables_format must be one of 'pickle', 'json', got 'yaml'"),
        ("[fs_persister.defaults]\ninline_threshold = -1\n",
         "inline_threshold must be an int from 0 to 1048576 (1 MiB), got -1"),
        ("[fs_persister.defaults]\ninline_threshold = 100000000000\n",
         "inline_threshold must be an int from 0 to 1048576 (1 MiB), got 100000000000"),
        ("[fs_persister.defaults]\ninline_threshold = 1e11\n",
         "inline_threshold must be an int from 0 to 1048576 (1 MiB), got 100000000000.0"),
        ("[fs_persister.defaults]\nmax_entries_in_log = 1.5\n",
         "max_entries_in_log must be an int >= 0, or -1 for no limit, got 1.5"),
        ("[fs_persister.defaults]\nlock_timeout = '10'\n",
         "lock_timeout must be a number >= 0, got '10'"),
        ("[fs_persister.defaults]\nverify_reads = 'yes'\n",
         "verify_reads must be True or False, got 'yes'"),
        ("[fs_persister.defaults]\ndir_path = 3\n", "dir_path must be a non-empty path, got 3"),
        ("[fs_persister.default_cleanup_strategy]\nmax_entries = 3\n",
         "[fs_persister.default_cleanup_strategy]: unknown key 'max_entries'; allowed keys: "
         "max_calls_per_function, max_entries_per_block, max_entries_per_module, "
         "max_entry_age_days, max_total_content_size"),
        ("[fs_persister.default_cleanup_strategy]\nmax_entries_per_block = 0\n",
         "max_entries_per_block must be an int >= 1 or None (no limit), got 0 "
         "(in a file, -1 means no limit)"),
        ("[fs_persister.default_cleanup_strategy]\nmax_entry_age_days = 0\n",
         "max_entry_age_days must be a number of days > 0 or None, got 0"),
        ("[fs_persister.default_cleanup_strategy]\nmax_total_content_size = 'lots'\n",
         "max_total_content_size must be a number of bytes or a size such as '500MB'"),
    ],
)  # fmt: skip
def test_every_error_in_a_file_names_file_key_and_allowed_values(
    tmp_path: Path, home: Path, text: str, expected: str
) -> None:
    assert expected in _error(tmp_path, text)


def test_errors_in_pyproject_name_its_table(tmp_path: Path, home: Path) -> None:
    message = _error(
        tmp_path, "[tool.marimo.fs_persister.defaults]\nmemory_map = 1\n", "pyproject.toml"
    )
    assert "[tool.marimo.fs_persister.defaults]: memory_map must be True or False, got 1" in message


def test_an_unreadable_file_is_a_config_error(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import marimo_store.config

    def refuse(path: Any, mode: str = "r") -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(marimo_store.config, "open", refuse, raising=False)
    assert "cannot read it: [Errno 13] Permission denied" in _error(tmp_path, "")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"lock_timeout": -1}, "App(config=...): lock_timeout must be a number >= 0, got -1"),
        ({"max_entries_per_module": "2"}, "App(config=...): max_entries_per_module must be an "
         "int >= 1 or None (no limit), got '2'"),
        ({"durabilty": "fsync"}, "App(config=...): unknown key 'durabilty'; allowed keys: "
         "allow_other_files, auto_variables_format, cleanup_on_exit"),
        ({"dir_path": ""}, "App(config=...): dir_path must be a non-empty path, got ''"),
        (["durability"], "App(config=...): config must be a mapping, got list"),
    ],
)  # fmt: skip
def test_every_error_in_explicit_settings(
    tmp_path: Path, home: Path, config: Any, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        read_settings(str(tmp_path), config)
    assert str(caught.value).startswith(expected)
