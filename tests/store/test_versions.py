"""Version policy on `load` and `get`: recorded versions against running ones.

A recorded version is faked by patching what the writing side asks for the
package versions, the same function a real older environment would answer
differently; the reading side then compares against the real versions.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from marimo_store import (
    Entry,
    EntryMetadata,
    ExecutionKey,
    InvalidArgumentError,
    StoreError,
    StoreWarning,
    VersionDifference,
    VersionMismatchError,
    _environment,
)

ARRAY = np.arange(20_000)


def _saved_with(
    monkeypatch: pytest.MonkeyPatch,
    store: Any,
    name: str,
    value: Any,
    *,
    packages: Mapping[str, str] | None = None,
    python: str | None = None,
) -> EntryMetadata:
    """Save `value` as if the process had these package or Python versions."""
    with monkeypatch.context() as patch:
        if packages is not None:
            real = _environment.package_versions
            patch.setattr(
                _environment,
                "package_versions",
                lambda modules: {**real(modules), **packages},
            )
        if python is not None:
            patch.setattr(_environment, "python_version", lambda: python)
        metadata: EntryMetadata = store.save(name, value)
    return metadata


def _store_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]


def test_matching_versions_load_silently(any_store: Any) -> None:
    any_store.save("array", ARRAY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for policy in ("warn", "strict"):
            np.testing.assert_array_equal(any_store.load("array", version_policy=policy), ARRAY)
    assert _store_warnings(caught) == []


def test_warn_loads_with_one_warning_naming_the_versions(
    any_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = _saved_with(monkeypatch, any_store, "array", ARRAY, packages={"numpy": "0.1"})
    assert saved.environment.packages["numpy"] == "0.1"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = any_store.load("array")
    np.testing.assert_array_equal(loaded, ARRAY)
    messages = _store_warnings(caught)
    assert len(messages) == 1, messages
    assert "object 'array'" in messages[0]
    assert f"numpy 0.1 (running {np.__version__})" in messages[0]
    assert caught[0].filename == __file__  # points at the caller, not into the store


def test_ignore_loads_silently(any_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _saved_with(monkeypatch, any_store, "array", ARRAY, packages={"numpy": "0.1"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = any_store.load("array", version_policy="ignore")
    np.testing.assert_array_equal(loaded, ARRAY)
    assert _store_warnings(caught) == []


def test_strict_refuses_before_unpickling(any_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = _saved_with(monkeypatch, any_store, "array", ARRAY, packages={"numpy": "0.1"})
    with pytest.raises(
        VersionMismatchError, match=r"numpy 0\.1 .*version_policy='strict'"
    ) as caught:
        any_store.load("array", version_policy="strict")
    error = caught.value
    assert isinstance(error, StoreError)
    assert error.key == saved.key
    assert error.differences == (VersionDifference("numpy", "0.1", np.__version__),)
    # It crosses process boundaries intact (a worker's error reaches the client).
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.key, copy.differences, str(copy)) == (error.key, error.differences, str(error))


def test_a_callable_decides(any_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = _saved_with(monkeypatch, any_store, "array", ARRAY, packages={"numpy": "0.1"})
    seen: list[tuple[EntryMetadata, tuple[VersionDifference, ...]]] = []

    def same_major(metadata: EntryMetadata, differences: tuple[VersionDifference, ...]) -> bool:
        seen.append((metadata, differences))
        return all(
            d.running is not None and d.running.split(".")[0] == d.recorded.split(".")[0]
            for d in differences
        )

    with pytest.raises(VersionMismatchError, match="the version_policy callable"):
        any_store.load("array", version_policy=same_major)
    assert seen[0][0].key == saved.key
    assert seen[0][1] == (VersionDifference("numpy", "0.1", np.__version__),)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = any_store.load("array", version_policy=lambda metadata, differences: True)
    np.testing.assert_array_equal(loaded, ARRAY)
    assert _store_warnings(caught) == []


def test_get_applies_the_policy_too(any_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    key = ExecutionKey("block", "computation")
    with monkeypatch.context() as patch:
        patch.setattr(_environment, "package_versions", lambda modules: {"numpy": "0.1"})
        any_store.put(Entry.of(key, {"a": ARRAY}))
    with pytest.warns(StoreWarning, match="numpy 0.1") as caught:
        entry = any_store.get(key)
    assert entry is not None
    assert len([w for w in caught if issubclass(w.category, StoreWarning)]) == 1
    np.testing.assert_array_equal(entry.variables["a"], ARRAY)
    with pytest.raises(VersionMismatchError):
        any_store.get(key, version_policy="strict")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert any_store.get(key, version_policy="ignore") is not None
    with pytest.raises(InvalidArgumentError, match="version_policy must be"):
        any_store.get(key, version_policy="sometimes")
    with pytest.raises(InvalidArgumentError, match="version_policy must be"):
        any_store.get(ExecutionKey("absent", "key"), version_policy=3)


def test_python_differs_by_minor_version_only(
    any_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = _environment.python_version()
    major, minor, _ = running.split(".")
    _saved_with(monkeypatch, any_store, "micro", 1, python=f"{major}.{minor}.999")
    _saved_with(monkeypatch, any_store, "minor", 2, python=f"{major}.{int(minor) + 1}.0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert any_store.load("micro", version_policy="strict") == 1
    with pytest.raises(VersionMismatchError) as caught:
        any_store.load("minor", version_policy="strict")
    assert caught.value.differences == (
        VersionDifference("python", f"{major}.{int(minor) + 1}.0", running),
    )


def test_a_package_that_is_not_installed_differs(
    any_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _saved_with(monkeypatch, any_store, "x", 1, packages={"surely_not_installed_pkg": "1.0"})
    with pytest.raises(
        VersionMismatchError, match=r"surely_not_installed_pkg 1\.0 \(not installed\)"
    ):
        any_store.load("x", version_policy="strict")


@pytest.mark.parametrize("has_uname", [True, False])
def test_the_platform_tag_is_platform_machine_with_or_without_uname(
    monkeypatch: pytest.MonkeyPatch, has_uname: bool
) -> None:
    import os
    import platform
    import sys

    from marimo_store._environment import platform_tag

    expected = f"{sys.platform}-{platform.machine().lower()}"
    if not has_uname:  # as on Windows: platform answers
        monkeypatch.delattr(os, "uname")
    platform_tag.cache_clear()
    try:
        assert platform_tag() == expected
    finally:
        platform_tag.cache_clear()
