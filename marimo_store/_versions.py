"""Version policy: may a value stored by another environment be loaded here?

Every entry records the Python version and the versions of the packages
whose classes its values pickle (`EntryMetadata.environment`). A pickle of
a pandas object from another major version may load wrongly or not at all;
the policy decides before anything is unpickled:

- `"ignore"`: load;
- `"warn"` (default): load, with one `StoreWarning` naming every package
  whose version differs;
- `"strict"`: raise `VersionMismatchError` instead of loading;
- a callable `(metadata, differences) -> bool`: load when it returns true,
  else raise `VersionMismatchError`.

A package differs when its installed version is not the recorded one (or it
is not installed); Python differs when its major or minor version does
(micro releases keep pickles and extension modules compatible).
"""

from __future__ import annotations

import warnings

from marimo_store._entry import EntryMetadata, Environment
from marimo_store._environment import package_version, python_version
from marimo_store._errors import InvalidArgumentError, StoreWarning, VersionMismatchError
from marimo_store._value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Literal, TypeAlias

    VersionPolicy: TypeAlias = (
        Literal["ignore", "warn", "strict"]
        | Callable[[EntryMetadata, tuple["VersionDifference", ...]], bool]
    )

_NAMED_POLICIES = ("ignore", "warn", "strict")


class VersionDifference(Value):
    """One way the running environment differs from an entry's.

    `package` is a top-level module name, or `"python"`; `running` is None
    when the package is not installed here.
    """

    __slots__ = ("package", "recorded", "running")
    package: str
    recorded: str
    running: str | None

    def __init__(self, package: str, recorded: str, running: str | None) -> None:
        self._assign(package=package, recorded=recorded, running=running)

    def __str__(self) -> str:
        running = "not installed" if self.running is None else f"running {self.running}"
        return f"{self.package} {self.recorded} ({running})"


def check_policy(policy: object) -> None:
    """Raise `InvalidArgumentError` unless `policy` is a version policy."""
    if not ((isinstance(policy, str) and policy in _NAMED_POLICIES) or callable(policy)):
        raise InvalidArgumentError(
            f"version_policy must be 'ignore', 'warn', 'strict' or a callable "
            f"(metadata, differences) -> bool, got {policy!r}"
        )


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


_differences_of: dict[tuple[object, ...], tuple[VersionDifference, ...]] = {}
"""Memo by recorded environment: a process meets few distinct ones, and the
hit path of `get` must not look versions up again."""
_by_identity: dict[int, tuple[Environment, tuple[VersionDifference, ...]]] = {}
"""The same, by object: the index hands out the same metadata on every hit
of an entry, so most checks cost one dict lookup. Bounded; entries hold
their environment, so an id is never mistaken for another object's."""
_MAX_BY_IDENTITY = 1024


def version_differences(environment: Environment) -> tuple[VersionDifference, ...]:
    """How the running process differs from `environment` (empty: not at all)."""
    known = _by_identity.get(id(environment))
    if known is not None and known[0] is environment:
        return known[1]
    memo_key = (environment.python, *environment.packages.items())
    found = _differences_of.get(memo_key)
    if found is None:
        found = _differences_of[memo_key] = _differences(environment)
    if len(_by_identity) >= _MAX_BY_IDENTITY:
        _by_identity.clear()
    _by_identity[id(environment)] = (environment, found)
    return found


def _differences(environment: Environment) -> tuple[VersionDifference, ...]:
    differences: list[VersionDifference] = []
    running_python = python_version()
    if _minor(environment.python) != _minor(running_python):
        differences.append(VersionDifference("python", environment.python, running_python))
    for package, recorded in sorted(environment.packages.items()):
        running = package_version(package)
        if running != recorded:
            differences.append(VersionDifference(package, recorded, running))
    return tuple(differences)


def check_versions(
    metadata: EntryMetadata, policy: VersionPolicy, *, subject: str | None = None, stacklevel: int
) -> None:
    """Apply `policy` to a stored entry before it is loaded.

    Warns (`"warn"`) or raises `VersionMismatchError`; returns when the entry
    may be loaded. `subject` names it in messages (default: its key);
    `stacklevel` is the caller's, as for `warnings.warn`.
    """
    if policy == "ignore":
        return
    differences = version_differences(metadata.environment)
    if not differences:
        return
    what = subject or f"entry {metadata.key}"
    listed = ", ".join(map(str, differences))
    if policy == "warn":
        warnings.warn(
            f"marimo_store: {what} was stored with {listed}; loading it anyway "
            "(version_policy='strict' refuses, 'ignore' stays silent)",
            StoreWarning,
            stacklevel=stacklevel + 1,
        )
        return
    if policy != "strict" and callable(policy) and policy(metadata, differences):
        return
    reason = "version_policy='strict'" if policy == "strict" else "the version_policy callable"
    raise VersionMismatchError(
        f"{what} was stored with {listed}; refused by {reason}", metadata.key, differences
    )
