"""The documentation cannot drift from the code: every constructor argument
is in the configuration reference with its true default, and every link
between pages (and to a section) leads somewhere."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from marimo_store import DefaultCleanupStrategy, FsPersistentStore, persistent_cache

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
NOT_LITERAL = {("FsPersistentStore", "path"), ("FsPersistentStore", "cleanup_strategy")}
"""Documented defaults that are words rather than Python values."""


def documented_arguments(section: str) -> dict[str, str]:
    """`{argument: default cell}` of the table under `## \\`section\\`` in
    configuration.md."""
    text = (DOCS / "configuration.md").read_text()
    body = text.split(f"\n## `{section}`\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.*?) \|", body, flags=re.MULTILINE)
    return dict(rows)


def signature_defaults(function: Any, skip: tuple[str, ...] = ("self",)) -> dict[str, Any]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if name not in skip
    }


@pytest.mark.parametrize(
    ("section", "function", "skip"),
    [
        ("FsPersistentStore", FsPersistentStore.__init__, ("self",)),
        ("DefaultCleanupStrategy", DefaultCleanupStrategy.__init__, ("self",)),
        ("persistent_cache", type(persistent_cache).__call__, ("self", "func")),
    ],
)
def test_every_argument_is_documented_with_its_default(
    section: str, function: Any, skip: tuple[str, ...]
) -> None:
    documented = documented_arguments(section)
    actual = signature_defaults(function, skip)
    assert sorted(documented) == sorted(actual), section
    for name, default in actual.items():
        if (section, name) in NOT_LITERAL:
            continue
        cell = documented[name]
        assert cell.startswith("`") and cell.endswith("`"), (section, name, cell)
        assert ast.literal_eval(cell.strip("`")) == default, (section, name, cell)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def test_links_between_pages_lead_somewhere() -> None:
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            destination = (page.parent / path).resolve() if path else page
            if not destination.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                broken.append(f"{page.name}: {target} (no such section)")
    assert broken == []
