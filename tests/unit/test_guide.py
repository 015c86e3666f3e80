"""docs/GUIDE.md stays true: every `path::name` it cites names a file and a definition in it."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "GUIDE.md"
# `path.py::name` or `path.py::Class.method`, or a bare `path.ext`, inside backticks
REFERENCE = re.compile(
    r"`((?:src|tests|examples|docs)/[\w./-]+\.(?:py|lua|sql|md))(?:::([\w.]+))?`"
)
PATTERNS = 10  # the guide walks through ten patterns, each with code, a test and an exercise


def references(text: str) -> list[tuple[str, str | None]]:
    """Every (path, name or None) the text cites."""
    return [(path, name or None) for path, name in REFERENCE.findall(text)]


def broken(text: str) -> list[str]:
    """The references in `text` whose file or definition does not exist."""
    bad = []
    for path, name in references(text):
        file = ROOT / path
        if not file.is_file():
            bad.append(f"{path}: no such file")
        elif name is not None and not _defines(file, name):
            bad.append(f"{path}::{name}: not defined there")
    return bad


def _defines(file: Path, dotted: str) -> bool:
    """Whether `file` defines `dotted` (a function, class, module constant, or Class.member)."""
    scope: list[ast.stmt] = _tree(file).body
    for part in dotted.split("."):
        found = next((node for node in scope if part in _names(node)), None)
        if found is None:
            return False
        scope = found.body if isinstance(found, ast.ClassDef) else []
    return True


@cache
def _tree(file: Path) -> ast.Module:
    return ast.parse(file.read_text())


def _names(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {t.id for t in node.targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    return set()


def test_every_reference_in_the_guide_exists() -> None:
    assert broken(GUIDE.read_text()) == []


def test_every_pattern_cites_its_code_its_test_and_an_exercise() -> None:
    sections = re.split(r"^## ", GUIDE.read_text(), flags=re.M)
    patterns = [s for s in sections if re.match(r"\d+\. ", s)]
    assert len(patterns) == PATTERNS
    for section in patterns:
        cited = references(section)
        title = section.splitlines()[0]
        assert any(p.startswith("src/") and n for p, n in cited), f"{title}: no code cited"
        assert any(p.startswith("tests/") and n and n.startswith("test_") for p, n in cited), (
            f"{title}: no test cited"
        )
        assert "**Exercise.**" in section, f"{title}: no exercise"


def test_a_wrong_reference_is_caught() -> None:
    text = (
        "`src/taskengine/app.py::App.submit` `src/taskengine/app.py::App.no_such_method` "
        "`src/taskengine/no_such_module.py::x` "
        "`tests/unit/test_guide.py::test_a_wrong_reference_is_caught` "
        "`src/taskengine/brokers/sqlite/queries.py::RESERVE`"
    )
    assert broken(text) == [
        "src/taskengine/app.py::App.no_such_method: not defined there",
        "src/taskengine/no_such_module.py: no such file",
    ]
