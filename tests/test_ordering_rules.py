"""The ordering rules of docs/format.md §14 and the code cite each other:
every rule id a module docstring cites exists in §14, and every rule of §14
is cited by at least one module docstring, so neither a renumbered rule nor
a module that stopped citing its rules goes unnoticed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "marimo_store"
RULE = re.compile(r"\b[WMR][0-9]+\b")
CITATION = re.compile(r"^Implements ([^(]*)\(docs/format\.md §14\)\.$", flags=re.MULTILINE)


def documented_rules() -> set[str]:
    """The rule ids §14 numbers, from its `- **W1 Title.**` items."""
    text = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
    section = text.split("\n## 14. ", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^- \*\*([WMR][0-9]+) ", section, flags=re.MULTILINE))


def cited_rules() -> dict[str, set[str]]:
    """`{module: rule ids}` from each module docstring's `Implements` line."""
    cited = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        rules = {rule for line in CITATION.findall(docstring) for rule in RULE.findall(line)}
        if rules:
            cited[path.relative_to(PACKAGE).as_posix()] = rules
    return cited


def test_section_14_numbers_its_rules() -> None:
    assert {"W1", "M1", "R1"} <= documented_rules()


def test_every_cited_rule_exists() -> None:
    documented = documented_rules()
    unknown = {module: rules - documented for module, rules in cited_rules().items()}
    assert {module: rules for module, rules in unknown.items() if rules} == {}


def test_every_rule_is_cited() -> None:
    cited = set().union(*cited_rules().values())
    assert sorted(documented_rules() - cited) == []
