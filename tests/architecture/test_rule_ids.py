"""Docs that resolve: every rule id a docstring or a comment of ``autumn_core`` or ``adapters``
cites (``C8``, ``P12``, ``S7(6)``…) is an anchor of ``docs/rules.md``."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "rules.md"

#: The rule families of docs/rules.md (longest first, so "CO5" is not read as "C" + "O5").
FAMILIES = (
    "BC",
    "CO",
    "CS",
    "DF",
    "EN",
    "EO",
    "RO",
    "A",
    "B",
    "C",
    "D",
    "E",
    "I",
    "K",
    "O",
    "P",
    "Q",
    "R",
)
FAMILIES += ("S", "T", "U", "W", "X")
RULE_ID = re.compile(r"\b(?:" + "|".join(FAMILIES) + r")[0-9]+\b")

#: Text that looks like a rule id and is not one.
NOT_RULES = {
    "C0",  # "C0/C1 control characters" (Unicode), in values.py
}


def anchors() -> set[str]:
    return set(re.findall(r'<a id="([A-Z]+[0-9]+)"></a>', RULES.read_text()))


def prose(path: Path) -> Iterator[tuple[int, str]]:
    """The comments and docstrings of a module, with their lines."""
    source = path.read_text()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string
    for node in ast.walk(ast.parse(source)):
        # Docstrings, and the bare strings that document attributes.
        expr = node.value if isinstance(node, ast.Expr) else None
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            yield node.lineno, expr.value


SOURCES = sorted([*(ROOT / "autumn_core").rglob("*.py"), *(ROOT / "adapters").rglob("*.py")])


def test_the_rules_page_has_every_family() -> None:
    found = anchors()
    assert {"C8", "P12", "T10", "EN2", "S7", "W6", "D15", "E35"} <= found
    assert len(found) > 150


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_rule_id_is_on_the_rules_page(path: Path) -> None:
    known = anchors()
    missing = [
        f"line {line}: {rule}"
        for line, text in prose(path)
        for rule in RULE_ID.findall(text)
        if rule not in known and rule not in NOT_RULES
    ]
    assert missing == [], f"cited in {path.relative_to(ROOT)}, absent from docs/rules.md"


def test_the_code_cites_rules() -> None:
    cited = {rule for path in SOURCES for _, text in prose(path) for rule in RULE_ID.findall(text)}
    assert len(cited - NOT_RULES) > 100


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_code_cites_the_rules_page_not_a_file_outside_the_repository(path: Path) -> None:
    assert "DOMAIN.md" not in path.read_text()
