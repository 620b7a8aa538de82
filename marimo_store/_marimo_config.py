"""Whether marimo will silently ignore `[cache] store = {type = "fs_persistent"}`.

marimo (0.25, `marimo/_config`) takes as its *user* configuration the first
`.marimo.toml` found walking up from its working directory (stopping at the
home directory), else `~/.marimo.toml`, else
`$XDG_CONFIG_HOME/marimo/marimo.toml`. So a project's `.marimo.toml` hides
the user's file, and with it the `[cache] store` set there; `cache.store` in
a project's `.marimo.toml` is dropped ("travels with the code"); and from
`pyproject.toml` (`[tool.marimo.cache]`) marimo's pickle loader refuses it.
Each time `mo.persistent_cache` falls back to marimo's own `FileStore`; in
the first case nothing at all says so. `ignored_store_finding` recognises these
cases from the files alone (marimo is not imported) and says what to change;
`doctor()` reports it and the first default store of a process logs it.
"""

from __future__ import annotations

import os

from marimo_store._config_files import (
    PROJECT_FILE,
    nearest_project_file,
    nearest_pyproject,
    parse_toml,
    user_config_candidates,
    user_config_file,
)
from marimo_store._errors import ConfigError
from marimo_store._findings import Finding

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CODE = "marimo-ignores-store"
STORE_TYPE = "fs_persistent"


def marimo_config_file(working_dir: str) -> str | None:
    """The file marimo reads as its user configuration when run from
    `working_dir` (`marimo._config.utils.get_user_config_path`)."""
    return nearest_project_file(working_dir) or user_config_file()


def _table(path: str, *names: str) -> Any:
    """The value at `names` in the TOML file `path`; None if absent or unreadable
    (marimo_store's own reading of the file reports what is wrong with it)."""
    try:
        with open(path, "rb") as file:
            value: Any = parse_toml(file.read(), path)
    except (OSError, ConfigError):
        return None
    for name in names:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _selects_this_store(store: Any) -> bool:
    """Whether marimo's `cache.store` value names this package's store."""
    if isinstance(store, list):
        return any(_selects_this_store(item) for item in store)
    return isinstance(store, dict) and store.get("type") == STORE_TYPE


def _same(path: str, other: str) -> bool:
    return os.path.realpath(path) == os.path.realpath(other)


def ignored_store_finding(working_dir: str) -> Finding | None:
    """A warning when marimo, run from `working_dir`, will not use the
    `fs_persistent` store a configuration file selects; None otherwise."""
    user_files = [path for path in user_config_candidates() if os.path.isfile(path)]
    xdg = user_config_candidates()[1]
    marimo_file = marimo_config_file(working_dir)
    pyproject = nearest_pyproject(working_dir)
    reasons: list[str] = []
    paths: list[str] = []
    if marimo_file is not None:
        project = not any(_same(marimo_file, user) for user in user_files)
        where = pyproject or os.path.join(os.path.dirname(marimo_file), "pyproject.toml")
        fix = (
            f"Fix: move the settings of {marimo_file} into {where} under [tool.marimo] "
            "(marimo reads its settings there, and marimo_store its [fs_persister.*] tables "
            "as [tool.marimo.fs_persister.*]) and delete it; or keep it and pass the store "
            "in the notebook: mo.persistent_cache(..., store=MarimoStore()) with "
            "`from marimo_store.marimo import MarimoStore`."
            if project
            else f"Fix: move [cache] store into {marimo_file}."
        )
        hidden = [
            path
            for path in user_files
            if not _same(path, marimo_file) and _selects_this_store(_table(path, "cache", "store"))
        ]
        if hidden:
            reasons.append(
                f"marimo reads {marimo_file} as its configuration (the first {PROJECT_FILE} "
                f"walking up from {working_dir}, else ~/{PROJECT_FILE}, else {xdg}) instead "
                f"of {', '.join(hidden)}, so the "
                f'[cache] store = {{type = "{STORE_TYPE}"}} set there is not used. ' + fix
            )
            paths += [marimo_file, *hidden]
        if project and _selects_this_store(_table(marimo_file, "cache", "store")):
            reasons.append(
                f"marimo ignores [cache] store in {marimo_file} (a project's {PROJECT_FILE} "
                f"travels with the code). Set [cache] store = "
                f'{{type = "{STORE_TYPE}"}} in your user configuration {xdg} instead. ' + fix
            )
            paths.append(marimo_file)
    if pyproject is not None and _selects_this_store(
        _table(pyproject, "tool", "marimo", "cache", "store")
    ):
        reasons.append(
            f"marimo's pickle loader (mo.persistent_cache's default) refuses [tool.marimo.cache] "
            f"store from {pyproject} (a file that travels with the code); only json caches "
            f"reach the store. Fix: remove it there and set [cache] store = "
            f'{{type = "{STORE_TYPE}"}} in your user configuration {xdg}.'
        )
        paths.append(pyproject)
    if not reasons:
        return None
    message = (
        "mo.persistent_cache falls back to marimo's own FileStore (__marimo__/cache: no "
        "deduplication, no cleanup) without a warning: " + " ".join(reasons)
    )
    return Finding(CODE, "warning", message, tuple(dict.fromkeys(paths)))


_reported: set[Finding] = set()


def log_ignored_store(working_dir: str) -> None:
    """Log `ignored_store_finding` (logger `marimo_store`, WARNING), once per
    process for each distinct finding."""
    finding = ignored_store_finding(working_dir)
    if finding is None or finding in _reported:
        return
    _reported.add(finding)
    import logging  # noqa: PLC0415 - ~5 ms; only this message needs it

    logging.getLogger("marimo_store").warning("marimo_store: %s", finding.message)
