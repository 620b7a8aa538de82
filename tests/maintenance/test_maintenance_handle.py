"""No module outside the store's own parts reaches into a store's private attributes.

Maintenance (`_verify.py`, `_doctor.py`, the CLI) works through
`store.maintenance()` (`marimo_store/_maintenance.py`), so the store's
internals can change behind one handle. This test parses every module of
`marimo_store` with `ast` and fails on an attribute access `store._name`
(a variable called `store`, a private attribute) outside `store.py` and the
modules `store.py` hands work to.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "marimo_store"

STORE_PARTS = frozenset(
    ("store.py", "_options.py", "_writer.py", "_reader.py", "_refresh.py", "_accesses.py",
     "_cleanup_trigger.py", "_compaction.py")
)  # fmt: skip
"""`store.py` and the parts its docstring says it hands each call to."""


def _private_accesses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{path.name}:{node.lineno}: store.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "store"
        and node.attr.startswith("_")
    ]


def test_only_the_store_and_its_parts_touch_private_store_attributes() -> None:
    found = [
        access
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).as_posix() not in STORE_PARTS
        for access in _private_accesses(path)
    ]
    assert not found, "use store.maintenance() instead: " + "; ".join(found)


def test_the_check_sees_a_private_access(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f(store):\n    return store._merged_state(), store.layout\n")
    assert [a.split(": ")[1] for a in _private_accesses(module)] == ["store._merged_state"]
