"""Importing marimo_store stays light: every new process pays for it."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = {
    "numpy", "pandas", "marimo", "json", "dataclasses", "inspect", "typing", "ast", "dis",
    "asyncio", "logging", "tomllib", "tomli", "cloudpickle", "importlib.metadata",
}  # fmt: skip
CACHING = {"marimo_store.app", "marimo_store.cache", "marimo_store.config", "marimo_store.legacy"}
MARIMO_PLUGIN = {"marimo_store.marimo", "marimo_store._migrate", "marimo_store._pieces"}


def _modules_after(code: str) -> set[str]:
    script = f"import sys\nbefore = set(sys.modules)\n{code}\n"
    script += "loaded = sorted(set(sys.modules) - before)\nimport json\nprint(json.dumps(loaded))"
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(json.loads(output))


def test_importing_the_package_loads_neither_heavy_modules_nor_the_caching_layer() -> None:
    loaded = _modules_after("import marimo_store")
    assert "marimo_store.store" in loaded
    assert not loaded & (HEAVY | CACHING | MARIMO_PLUGIN)


def test_the_decorator_loads_nothing_heavy_until_a_function_is_called() -> None:
    loaded = _modules_after(
        "from marimo_store import persistent_cache, App\n"
        "@persistent_cache\ndef f(x):\n    return x\n"
    )
    assert loaded >= CACHING
    assert not loaded & HEAVY
