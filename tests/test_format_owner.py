"""No module outside `marimo_store/_format/` spells the store's layout.

The format package is the one place that knows the on-disk names
(docs/format.md §2, §3): directories, generated files, lock files, file
suffixes. This test parses every other module with `ast` and fails on a
string constant that names a piece of the layout where code would use it as
a path: a layout file name anywhere, a layout directory joined into a path
(`os.path.join`, `Path`, `/`) or listed in a module-level constant, a path
that starts with a layout directory, or a layout suffix. Docstrings,
messages and the keys of reports (`"objects": 3`) are not paths.

`KNOWN` lists what remains in modules other engineers were reshaping while
the format package was made (issue 16); each entry is a debt, not a licence:
move it into the format package and delete the line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "marimo_store"
FORMAT = PACKAGE / "_format"

DIRECTORIES = frozenset(
    ("objects", "log", "snapshots", "locks", "quarantine", "tmp", "local", "flights")
)
FILES = frozenset(
    ("format.json", ".gitignore", ".gitattributes", "objects.lock", "modification.lock")
)
SUFFIXES = frozenset((".snap", ".log", ".lock", ".tmp", ".msgpack"))
PATH_LIKE = re.compile(r"(?:" + "|".join(sorted(DIRECTORIES)) + r")/\S*")

OTHER_FORMATS = frozenset(("legacy.py", "_migrate.py"))
"""The legacy store's layout (`LegacyPersistentStore`, and the migration
that reads it) is another format, not this one."""

KNOWN: frozenset[tuple[str, str]] = frozenset()


def _docstrings(tree: ast.Module) -> set[int]:
    """The ids of docstring nodes: a module's, class's or function's, and an
    attribute docstring right after an assignment."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for index, statement in enumerate(node.body):
            if not (
                isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            ):
                continue
            if index == 0 or isinstance(node.body[index - 1], ast.Assign | ast.AnnAssign):
                found.add(id(statement.value))
    return found


def _joins_a_path(parent: ast.AST | None) -> bool:
    """Whether a constant under `parent` is a part of a path being built."""
    if isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Div):
        return True
    if isinstance(parent, ast.Call):
        function = parent.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        return name in ("join", "Path", "joinpath")
    return False


def _slots(statement: ast.Assign | ast.AnnAssign) -> bool:
    """Whether `statement` assigns `__slots__`: its strings name attributes."""
    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
    return any(isinstance(target, ast.Name) and target.id == "__slots__" for target in targets)


def _spellings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        if id(node) in docstrings:
            continue
        value, parent = node.value, parents.get(id(node))
        collection = parent if isinstance(parent, ast.Tuple | ast.List | ast.Set) else None
        assigned = parents.get(id(collection)) if collection is not None else None
        constant = isinstance(assigned, ast.Assign | ast.AnnAssign) and not _slots(assigned)
        if (
            value in FILES
            or value in SUFFIXES
            or PATH_LIKE.fullmatch(value)
            or (value in DIRECTORIES and (_joins_a_path(parent) or constant))
        ):
            found.append((node.lineno, value))
    return found


def test_only_the_format_package_spells_the_layout() -> None:
    found, known_seen = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        if FORMAT in path.parents or path.name in OTHER_FORMATS:
            continue
        module = path.relative_to(PACKAGE).as_posix()
        for line, value in _spellings(path):
            if (module, value) in KNOWN:
                known_seen.add((module, value))
            else:
                found.append(f"{module}:{line}: {value!r}")
    assert found == [], "layout names outside marimo_store/_format/:\n" + "\n".join(found)
    assert known_seen == KNOWN, f"KNOWN lists what is gone: {sorted(KNOWN - known_seen)}"


def test_the_check_sees_a_layout_path() -> None:
    """The scanner is not blind: it finds each kind of spelling it is meant to."""
    sample = FORMAT / "layout.py"
    values = {value for _, value in _spellings(sample)}
    assert {"objects", "format.json", ".gitignore", "flights", ".snap"} <= values
