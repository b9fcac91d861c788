"""No docstring of the package holds a control character from an unescaped backslash.

A math docstring written without the ``r`` prefix turns ``\\top`` into a tab and ``op``,
``\\beta`` into a backspace, ``\\frac`` into a form feed: the rendered formula is broken and
nothing fails. (The Step-2 checks' module docstring had ``G\\Sigma G^\\top`` without it.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bayesphys"
# what "\t", "\b", "\f", "\v", "\a" and "\r" become in a string that is not raw
CONTROL = set("\t\b\f\v\a\r")


def _docstrings(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                yield getattr(node, "name", "<module>"), doc


def test_the_scan_finds_an_unescaped_backslash(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('"""Covariance :math:`G^\\top G`."""\n', encoding="utf-8")
    assert [name for name, doc in _docstrings(bad) if CONTROL & set(doc)] == ["<module>"]


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_docstrings_hold_no_control_characters(path):
    bad = [name for name, doc in _docstrings(path) if CONTROL & set(doc)]
    assert not bad, f"{path.name}: docstrings of {bad} hold a control character (use r-strings)"
