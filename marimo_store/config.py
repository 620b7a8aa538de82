"""Store settings from configuration files (DESIGN.md §8).

Sources, nearest first; for each key the first source that sets it wins:

1. explicit arguments (`App(config={...})`);
2. the nearest `.marimo.toml` walking up from the notebook or script
   directory (up to the home directory when it lies below it, as marimo
   searches), table `[fs_persister]`, and the nearest `pyproject.toml`,
   table `[tool.marimo.fs_persister]`: the one found first walking up comes
   first (in one directory, `.marimo.toml`);
3. the user's `~/.marimo.toml`, else `$XDG_CONFIG_HOME/marimo/marimo.toml`
   (`~/.config/marimo/marimo.toml` when the variable is unset);
4. the built-in defaults of `FsPersistentStore` and `DefaultCleanupStrategy`.

`[fs_persister.defaults]` keys are `FsPersistentStore`'s arguments, with
`dir_path` for its path (relative to the file that sets it);
`[fs_persister.default_cleanup_strategy]` keys are `DefaultCleanupStrategy`'s,
where `-1` means "no limit" (TOML has no null). The allowed keys are read
from `StoreOptions` (where the store's constructor takes its defaults from)
and from `DefaultCleanupStrategy`'s signature, so they cannot drift. Anything
unknown or out of range is a `ConfigError` naming the file, the key and what
is allowed.

Trust settings follow stricter rules (docs/security.md), because a
project's files travel with its code: whoever can commit to the project
could otherwise make every reader trust their key. `signing_key` and
`trusted_signers` are refused (`ConfigError`) in a project's `.marimo.toml`
or `pyproject.toml`; `verify_signatures` from files is the strictest value
any of them sets, so a project can ask for verification but never turn off
what the user's file turns on. Explicit arguments are code and win as usual.
"""

from __future__ import annotations

import functools
import os

from marimo_store._cleanup import DefaultCleanupStrategy
from marimo_store._config_files import (
    PROJECT_FILE,
    PYPROJECT_FILE,
    nearest_file,
    parse_toml,
    user_config_file,
)
from marimo_store._errors import ConfigError
from marimo_store._options import option_defaults, validate_options
from marimo_store._trust import USER_LEVEL_OPTIONS, strictest
from marimo_store._value import Value
from marimo_store.store import FsPersistentStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

SECTION = "fs_persister"
DEFAULTS = "defaults"
STRATEGY = "default_cleanup_strategy"
DIR_PATH = "dir_path"
SIGNING_KEY = "signing_key"
MODE = "verify_signatures"
NO_LIMIT = -1
"""What a strategy key set to this value in a file means: no limit (None)."""

EXPLICIT = "App(config=...)"


class Settings(Value):
    """The merged settings: what to open a store with.

    `dir_path`: the store directory (absolute), or None when no source
    sets it. `store_options`: keyword arguments of `FsPersistentStore`.
    `cleanup_strategy`: a `DefaultCleanupStrategy` when a source sets one
    of its keys, else None. `sources`: the files that had settings,
    nearest first.
    """

    __slots__ = ("dir_path", "store_options", "cleanup_strategy", "sources")
    dir_path: str | None
    store_options: Mapping[str, Any]
    cleanup_strategy: DefaultCleanupStrategy | None
    sources: tuple[str, ...]

    def __init__(
        self,
        dir_path: str | None,
        store_options: Mapping[str, Any],
        cleanup_strategy: DefaultCleanupStrategy | None,
        sources: tuple[str, ...],
    ) -> None:
        self._assign(
            dir_path=dir_path,
            store_options=store_options,
            cleanup_strategy=cleanup_strategy,
            sources=sources,
        )

    def open_store(self, default_path: str) -> FsPersistentStore:
        """An `FsPersistentStore` at `dir_path` (else `default_path`) with these settings."""
        options = dict(self.store_options)
        if self.cleanup_strategy is not None:
            options["cleanup_strategy"] = self.cleanup_strategy
        return FsPersistentStore(self.dir_path or default_path, **options)


def anchor_directory(namespace: Mapping[str, Any]) -> str:
    """The notebook or script directory of code running in `namespace` (its
    globals): where configuration and `__marimo__` are looked for.

    The directory of its `__file__` (marimo sets it to the notebook's path),
    else the working directory (a REPL, `python -c`).
    """
    file = namespace.get("__file__")
    if isinstance(file, str) and os.path.isfile(file):
        return os.path.dirname(os.path.abspath(file))
    return os.getcwd()


def _keyword_defaults(function: Any) -> dict[str, Any]:
    import inspect  # noqa: PLC0415 - only configuration needs it

    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


@functools.cache
def store_defaults() -> dict[str, Any]:
    """`[fs_persister.defaults]` keys (but `dir_path`) and their built-in values."""
    defaults = option_defaults()
    del defaults["cleanup_strategy"]  # a callable: its own table configures it
    return defaults


@functools.cache
def strategy_defaults() -> dict[str, Any]:
    """`[fs_persister.default_cleanup_strategy]` keys and their built-in values."""
    return _keyword_defaults(DefaultCleanupStrategy.__init__)


def read_settings(start_dir: str, explicit: Mapping[str, Any] | None = None) -> Settings:
    """The settings for a notebook or script in `start_dir`."""
    layers: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    if explicit is not None:
        layers.append((EXPLICIT, *_check_explicit(explicit, start_dir)))
    user = user_config_file()
    for path, label in config_files(start_dir):
        section = _read_section(path, label)
        if section is not None:
            if user is None or not os.path.samefile(path, user):
                _refuse_user_level_options(section[0], f"{path}: [{label}.{DEFAULTS}]")
            layers.append((path, *section))
    store_options: dict[str, Any] = {}
    strategy: dict[str, Any] = {}
    for _, layer_options, layer_strategy in reversed(layers):
        store_options.update(layer_options)
        strategy.update(layer_strategy)
    from_files = [
        options[MODE] for source, options, _ in layers if source != EXPLICIT and MODE in options
    ]
    if from_files and (explicit is None or MODE not in layers[0][1]):
        store_options[MODE] = strictest(from_files)  # a project file cannot weaken the user's
    dir_path = store_options.pop(DIR_PATH, None)
    return Settings(
        dir_path,
        store_options,
        DefaultCleanupStrategy(**strategy) if strategy else None,
        tuple(source for source, _, _ in layers if source != EXPLICIT),
    )


def _refuse_user_level_options(options: Mapping[str, Any], where: str) -> None:
    for key in USER_LEVEL_OPTIONS:
        if key in options:
            raise ConfigError(
                f"{where}: {key} may only be set in your user configuration (~/{PROJECT_FILE} "
                "or $XDG_CONFIG_HOME/marimo/marimo.toml) or in code: a project's configuration "
                "travels with the code, so whoever can commit to the project could make every "
                "reader trust their own key and run their pickles (docs/security.md)"
            )


def config_files(start_dir: str) -> list[tuple[str, str]]:
    """`(path, table)` of each configuration file that applies, nearest first."""
    found: list[tuple[int, int, str, str]] = []
    home = os.path.abspath(os.path.expanduser("~"))
    for rank, (name, table, stop) in enumerate(
        ((PROJECT_FILE, SECTION, home), (PYPROJECT_FILE, f"tool.marimo.{SECTION}", None))
    ):
        nearest = nearest_file(start_dir, name, stop)
        if nearest is not None:
            distance, path = nearest
            found.append((distance, rank, path, table))
    files = [(path, table) for _, _, path, table in sorted(found)]
    user = user_config_file()
    if user is not None and not any(os.path.samefile(user, path) for path, _ in files):
        files.append((user, SECTION))
    return files


def load_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it: {error}") from None
    return parse_toml(data, path)


def _read_section(path: str, table: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The checked `(defaults, strategy)` tables of one file, None if it has neither."""
    section: Any = load_toml(path)
    for name in table.split("."):
        if not isinstance(section, dict) or name not in section:
            return None
        section = section[name]
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [{table}] must be a table")
    allowed = (DEFAULTS, STRATEGY)
    for name, value in section.items():
        if name not in allowed:
            raise ConfigError(
                f"{path}: unknown key {name!r} in [{table}]; allowed: {', '.join(allowed)}"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{table}.{name}] must be a table")
    base_dir = os.path.dirname(os.path.abspath(path))
    return (
        _check_store_options(section.get(DEFAULTS, {}), f"{path}: [{table}.{DEFAULTS}]", base_dir),
        _check_strategy(section.get(STRATEGY, {}), f"{path}: [{table}.{STRATEGY}]"),
    )


def _check_explicit(
    config: Mapping[str, Any], start_dir: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flat explicit settings: both tables' keys in one mapping."""
    if not hasattr(config, "items"):
        raise ConfigError(f"{EXPLICIT}: config must be a mapping, got {type(config).__name__}")
    strategy_keys = strategy_defaults().keys()
    strategy = {key: value for key, value in config.items() if key in strategy_keys}
    options = {key: value for key, value in config.items() if key not in strategy_keys}
    allowed = sorted([DIR_PATH, *store_defaults(), *strategy_keys])
    return (
        _check_store_options(options, EXPLICIT, start_dir, allowed),
        _check_strategy(strategy, EXPLICIT),
    )


def _check_store_options(
    values: Mapping[str, Any],
    where: str,
    base_dir: str,
    allowed: list[str] | None = None,
) -> dict[str, Any]:
    defaults = store_defaults()
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key == DIR_PATH:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}: dir_path must be a non-empty path, got {value!r}")
            checked[key] = os.path.join(base_dir, os.path.expanduser(value))
            continue
        if key not in defaults:
            keys = allowed or sorted([DIR_PATH, *defaults])
            raise ConfigError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(keys)}")
        try:
            validate_options({**defaults, "cleanup_strategy": None, key: value})
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        relative_key = key == SIGNING_KEY and isinstance(value, str)
        checked[key] = os.path.join(base_dir, os.path.expanduser(value)) if relative_key else value
    return checked


def _check_strategy(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    defaults = strategy_defaults()
    checked: dict[str, Any] = {}
    for key, given in values.items():
        if key not in defaults:
            raise ConfigError(
                f"{where}: unknown key {key!r}; allowed keys: {', '.join(sorted(defaults))}"
            )
        value = None if given == NO_LIMIT and not isinstance(given, bool) else given
        try:
            DefaultCleanupStrategy(**{key: value})
        except ConfigError as error:
            raise ConfigError(f"{where}: {error} (in a file, {NO_LIMIT} means no limit)") from None
        checked[key] = value
    return checked
