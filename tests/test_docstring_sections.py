"""The numpy sections of the public docstrings read as the API reference reads them.

mkdocstrings (``docstring_style: numpy``) takes each unindented line of a ``Parameters``,
``Returns``, ``Raises``, ``Attributes``... section as an item: a name and a type, shown as
literal code. Prose written there (``name: text``, a sentence after ``Returns``, a
``TypeError: when ...`` line) was shown as code, and the text after ``name:`` was dropped from
the parameter descriptions; the lines must be ``name : type`` (or a bare type / exception name).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_docs_roles import roles  # docs/_griffe_roles.py, loaded from docs/

ROOT = Path(__file__).resolve().parents[1]
# the sections whose unindented lines are items, as the API reference's extension lists them
ITEM_SECTIONS = roles.ITEM_SECTIONS
NAME = r"\*{0,2}[A-Za-z_][\w.]*"
NAMES = re.compile(rf"^{NAME}(?:\s*,\s*{NAME})*$")


def _is_dash_line(line: str) -> bool:
    return "-" in line and not line.replace("-", "").strip()


def _prose(text: str) -> bool:
    """Whether a name or type reads as a sentence rather than a name or type."""
    text = text.strip()
    if "``" in text or ":`" in text or text.endswith((".", ";", ":", ",")):
        return True
    if "; " in text or re.search(r"\w: ", text):
        return True
    flat = re.sub(r"\[[^\]]*\]|\{[^}]*\}|\([^)]*\)", "", text)
    return len(flat.split()) > 6


def misread_items(text: str) -> list[str]:
    """The item lines of ``text``'s numpy sections that are not ``name : type`` items."""
    bad = []
    lines = text.split("\n")
    section = None
    for i, line in enumerate(lines):
        if line.strip() and i + 1 < len(lines) and _is_dash_line(lines[i + 1]):
            section = line.strip().lower()
            continue
        if section not in ITEM_SECTIONS or not line.strip() or line[0].isspace():
            continue
        if _is_dash_line(line):
            continue
        name, sep, kind = line.partition(" : ")
        if sep:
            ok = bool(NAMES.match(name.strip())) and not _prose(kind)
        elif section in ("returns", "yields", "receives"):
            ok = not _prose(line)  # a bare type
        else:
            ok = bool(NAMES.match(line.strip()))
        if not ok:
            bad.append(f"[{section}] {line.strip()}")
    return bad


def test_the_check_sees_prose_items():
    text = (
        "Summary.\n\nParameters\n----------\nx : int\n    Fine.\nkind: ``'a'`` or ``'b'``.\n\n"
        "Returns\n-------\nThe matplotlib axes.\n\nRaises\n------\n"
        "TypeError: ``post`` is not a posterior.\n\nAttributes\n----------\n"
        "lo, hi: the training range.\nsteps : int\n    Fine.\n"
    )
    assert misread_items(text) == [
        "[parameters] kind: ``'a'`` or ``'b'``.",
        "[returns] The matplotlib axes.",
        "[raises] TypeError: ``post`` is not a posterior.",
        "[attributes] lo, hi: the training range.",
    ]
    good = (
        "Parameters\n----------\nx, y : Tensor or None\n    A ``[n]`` tensor.\n"
        "**kwargs : Any\n    Passed on.\n\nReturns\n-------\ndict[str, Tensor]\n    The fields.\n"
        "\nRaises\n------\nValueError\n    When ``x`` is empty.\n"
    )
    assert misread_items(good) == []


def test_public_docstrings_have_no_prose_in_item_lines():
    griffe = pytest.importorskip("griffe")
    package = griffe.load("bayesphys", search_paths=[str(ROOT)], allow_inspection=False)

    def objects(obj):
        yield obj
        for member in obj.members.values():
            if not member.is_alias:
                yield from objects(member)

    found = []
    for obj in objects(package):
        if obj.docstring is not None:
            found += [f"{obj.path}: {bad}" for bad in misread_items(obj.docstring.value)]
    assert not found, "docstring section lines read as items:\n" + "\n".join(found)
