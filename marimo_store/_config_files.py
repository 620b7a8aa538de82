"""Where marimo and marimo_store look for configuration files, and how one is parsed.

The nearest `.marimo.toml` walking up (to the home directory, as marimo
stops there), the nearest `pyproject.toml`, the user's own file: both
`config.py` (the store's settings) and `_marimo_config.py` (whether marimo
will ignore them) find files by these rules, so they cannot drift apart.
This module imports no store: `config.py` opens stores, and the doctor
(which a store imports) reads marimo's files through here without an
import cycle.
"""

from __future__ import annotations

import os
import sys

from marimo_store._errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROJECT_FILE = ".marimo.toml"
PYPROJECT_FILE = "pyproject.toml"


def user_config_candidates() -> tuple[str, str]:
    """`(~/.marimo.toml, $XDG_CONFIG_HOME/marimo/marimo.toml)`, existing or not:
    the files marimo treats as the user's own, in the order it reads them."""
    home = os.path.expanduser(os.path.join("~", PROJECT_FILE))
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser(os.path.join("~", ".config"))
    return home, os.path.join(base, "marimo", "marimo.toml")


def user_config_file() -> str | None:
    """`~/.marimo.toml` if it exists, else marimo's XDG location if that does."""
    return next((path for path in user_config_candidates() if os.path.isfile(path)), None)


def nearest_project_file(start_dir: str) -> str | None:
    """The nearest `.marimo.toml` in `start_dir` or a parent, up to the home
    directory when `start_dir` lies below it (where marimo stops, too)."""
    nearest = nearest_file(start_dir, PROJECT_FILE, os.path.abspath(os.path.expanduser("~")))
    return None if nearest is None else nearest[1]


def nearest_pyproject(start_dir: str) -> str | None:
    """The nearest `pyproject.toml` in `start_dir` or a parent."""
    nearest = nearest_file(start_dir, PYPROJECT_FILE, None)
    return None if nearest is None else nearest[1]


def nearest_file(start_dir: str, name: str, stop: str | None) -> tuple[int, str] | None:
    """`(levels up, path)` of the nearest file `name` in `start_dir` or a
    parent, not looking above `stop` (an absolute path) when `start_dir` is
    below it: marimo looks for `.marimo.toml` up to the home directory only,
    so a file above the home (a temp directory's) is neither marimo's
    configuration nor ours."""
    directory = os.path.abspath(start_dir)
    distance = 0
    while True:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return distance, candidate
        parent = os.path.dirname(directory)
        if directory in (parent, stop):
            return None
        directory, distance = parent, distance + 1


def parse_toml(data: bytes, path: str) -> dict[str, Any]:
    """The TOML document `data` (read from `path`); a `ConfigError` if it is not TOML."""
    if sys.version_info >= (3, 11):
        import tomllib  # noqa: PLC0415 - only configuration needs it
    else:  # pragma: no cover - Python 3.10 (the `tomli` dependency)
        import tomli as tomllib  # noqa: PLC0415
    try:
        return tomllib.loads(data.decode())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
