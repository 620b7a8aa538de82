"""What an entry records about the process that produced it.

Stored with each entry so a later reader can tell whether the bytes will
still load (a pickled pandas object from another major version may not),
without unpickling anything.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable

from marimo_store._entry import Environment

_NOT_PACKAGES = frozenset(sys.stdlib_module_names) | {"builtins", "__main__"}


@functools.cache
def python_version() -> str:
    """The running interpreter's version, e.g. `3.11.7`."""
    major, minor, micro = sys.version_info[:3]
    return f"{major}.{minor}.{micro}"


@functools.cache
def platform_tag() -> str:
    """OS and machine, e.g. `linux-x86_64`: what native buffers depend on.

    `os.uname()` where there is one, which is what `platform.machine()`
    reads there; `platform` (which imports `re`) only elsewhere (Windows).
    Every writer needs this, a reader's batch of access records included."""
    uname = getattr(os, "uname", None)
    if uname is not None:
        machine: str = uname().machine
    else:
        import platform  # noqa: PLC0415

        machine = platform.machine()
    return f"{sys.platform}-{machine.lower()}"


@functools.cache
def _distribution_map() -> dict[str, list[str]]:
    import importlib.metadata  # noqa: PLC0415 - 25 ms to import; rarely needed

    # Scans every installed distribution once (tens of ms); only reached for
    # modules that neither carry __version__ nor share their distribution's name.
    return dict(importlib.metadata.packages_distributions())


@functools.cache
def package_version(top_level_module: str) -> str | None:
    """The installed version of the package providing a top-level module."""
    module = sys.modules.get(top_level_module)
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    import importlib.metadata  # noqa: PLC0415 - 25 ms to import; rarely needed

    for name in (top_level_module, *_distribution_map().get(top_level_module, [])):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def package_versions(top_level_modules: Iterable[str]) -> dict[str, str]:
    """Versions of the third-party packages among `top_level_modules`.

    Standard-library and unversioned (project-local) modules are left out:
    their version is the interpreter's, or unknowable.
    """
    versions: dict[str, str] = {}
    for name in sorted(set(top_level_modules)):
        if name in _NOT_PACKAGES or name.startswith("_"):
            continue
        version = package_version(name)
        if version is not None:
            versions[name] = version
    return versions


def current_environment(top_level_modules: Iterable[str] = ()) -> Environment:
    """The environment of this process, with versions of the given packages."""
    return Environment(python_version(), platform_tag(), package_versions(top_level_modules))
