"""Importing marimo_store stays light: every new process pays for it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

HEAVY = {
    "numpy", "pandas", "marimo", "json", "dataclasses", "inspect", "typing", "ast", "dis",
    "asyncio", "logging", "tomllib", "tomli", "cloudpickle", "importlib.metadata", "rich",
    "pickle",  # with its `re` and `enum`: writers pickle; readers unpickle with `_pickle` alone
}  # fmt: skip
CACHING = {"marimo_store.app", "marimo_store.cache", "marimo_store.config"}
LEGACY = {"marimo_store.legacy"}
"""Loaded only where marimo's own cache folder is used: it imports pickle."""
MARIMO_PLUGIN = {"marimo_store.marimo", "marimo_store._migrate", "marimo_store._pieces"}
CLEANUP = {"marimo_store._cleanup", "marimo_store._compaction", "marimo_store._cleanup_plan"}
"""Loaded by the first cleanup (or the first use of a cleanup export)."""
WRITE_SIDE = {"marimo_store._writer", "marimo_store._cleanup_trigger", "marimo_store._locks"}
"""Loaded by a store's first write (a put, or the first batch of access records)."""
HANDLES = {"marimo_store._handles"}
"""Loaded by the first `ref()` (or unpickled handle)."""


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
    assert not loaded & (HEAVY | CACHING | LEGACY | MARIMO_PLUGIN)
    assert not any(module.startswith("marimo_store.cli") for module in loaded)


def test_importing_the_package_loads_neither_the_write_side_nor_the_cleanup() -> None:
    assert not _modules_after("import marimo_store") & (WRITE_SIDE | CLEANUP | HANDLES)
    assert "marimo_store._cleanup" in _modules_after(
        "from marimo_store import DefaultCleanupStrategy"
    )


def test_a_process_that_only_reads_loads_neither_the_write_side_nor_the_cleanup(
    tmp_path: Path,
) -> None:
    from marimo_store import Entry, ExecutionKey, FsPersistentStore

    store = FsPersistentStore(tmp_path / "store", cleanup_on_exit=False)
    store.put(Entry.of(ExecutionKey("b", "m"), {"v": 1}))
    store.close()
    loaded = _modules_after(
        "from marimo_store import ExecutionKey, FsPersistentStore\n"
        f"store = FsPersistentStore({str(tmp_path / 'store')!r})\n"
        "assert store.get(ExecutionKey('b', 'm')).variables['v'] == 1\n"
        "assert store.lookup(ExecutionKey('b', 'm')) is not None\n"
    )
    assert "marimo_store._reader" in loaded
    assert not loaded & (WRITE_SIDE | CLEANUP | HANDLES | {"pickle"})
    assert "marimo_store._writer" in _modules_after(
        "from marimo_store import Entry, ExecutionKey, FsPersistentStore\n"
        f"store = FsPersistentStore({str(tmp_path / 'store')!r})\n"
        "store.put(Entry.of(ExecutionKey('b', 'n'), {'v': 2}))\n"
    )


def test_a_reader_records_its_hits_at_exit_without_logging_platform_or_pickle(
    tmp_path: Path,
) -> None:
    from marimo_store import Entry, ExecutionKey, FsPersistentStore

    store = FsPersistentStore(tmp_path / "store", cleanup_on_exit=False)
    store.put(Entry.of(ExecutionKey("b", "m"), {"v": 1}))
    store.close()
    script = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print(json.dumps(sorted(sys.modules))))\n"  # runs last
        "from marimo_store import ExecutionKey, FsPersistentStore\n"
        f"store = FsPersistentStore({str(tmp_path / 'store')!r})\n"
        "assert store.get(ExecutionKey('b', 'm')).variables['v'] == 1\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    at_exit = set(json.loads(output))
    assert "marimo_store._writer" in at_exit  # the hit's access record was written
    assert not at_exit & {"logging", "platform", "pickle"}


def test_the_decorator_loads_nothing_heavy_until_a_function_is_called() -> None:
    loaded = _modules_after(
        "from marimo_store import persistent_cache, App\n"
        "@persistent_cache\ndef f(x):\n    return x\n"
    )
    assert loaded >= CACHING
    assert not loaded & (HEAVY | LEGACY)


# Import cycles that still exist in modules other helpers of issue 16 are
# reworking. Each entry is one strongly connected set of modules, as the
# test finds it; when a cycle is broken, delete its line (the test fails
# until the list is exact, so it cannot hide a cycle that grew or moved).
KNOWN_CYCLES: list[set[str]] = []

PACKAGE = Path(__file__).resolve().parent.parent / "marimo_store"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports when it runs: at module
    level and inside functions, not in `if TYPE_CHECKING:` (never run)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    pending: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *filter(None, [node.module])])
            for alias in node.names:  # a submodule, else a name defined in `base`
                found.add(submodule if (submodule := f"{base}.{alias.name}") in modules else base)
        pending.extend(ast.iter_child_nodes(node))
    return found & modules - {name}


def _import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: _imported(path, set(paths)) for name, path in paths.items()}


def _cyclic_groups(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected sets of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = set()
            while not group or module not in group:
                group.add(stack.pop())
            if len(group) > 1:
                groups.append(group)

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return groups


def _one_cycle(graph: dict[str, set[str]], group: set[str]) -> str:
    """A shortest import cycle through the group's first module, as text."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    for module in queue:
        for imported in sorted(graph[module] & group):
            if imported == start:
                return " -> ".join([*paths[module], start])
            if imported not in paths:
                paths[imported] = [*paths[module], imported]
                queue.append(imported)
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group has one


def test_the_package_has_no_import_cycles_but_the_known_ones() -> None:
    graph = _import_graph()
    assert {"marimo_store._named", "marimo_store._handles", "marimo_store.cli"} <= set(graph)
    groups = _cyclic_groups(graph)
    new = [_one_cycle(graph, group) for group in groups if group not in KNOWN_CYCLES]
    assert not new, "import cycles: " + "; ".join(new)
    gone = [sorted(cycle) for cycle in KNOWN_CYCLES if cycle not in groups]
    assert not gone, f"KNOWN_CYCLES lists cycles that no longer exist, remove them: {gone}"
