"""No two modules of the package import each other, directly or through others.

Read from the source with :mod:`ast`: imports inside functions count (a function-level import
that closes a cycle only hides it), imports under ``if TYPE_CHECKING:`` (annotations only) do
not. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``
(its ``__init__``); the implicit import of a module's parent packages is not an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bayesphys

PACKAGE = Path(bayesphys.__file__).parent


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for sub in node.body:
                    for inner in ast.walk(sub):
                        skip.add(id(inner))
    return skip


def import_graph(root: Path) -> dict[str, set[str]]:
    """``module -> modules it imports`` within the package at ``root``."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_blocks(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    bits = package.split(".")
                    base = ".".join(bits[: len(bits) - (node.level - 1)])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in mods else base)
            for t in targets:
                while t and t not in mods:  # import a.b.c of a module: its deepest known part
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_the_package_has_no_import_cycles():
    found = cycles(import_graph(PACKAGE))
    assert not found, "modules that import each other (directly or through others): " + "; ".join(
        " <-> ".join(c) for c in found
    )


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"a.py": "from .b import x", "b.py": "from .a import y"}, [["pkg.a", "pkg.b"]]),
        (
            {"a.py": "from .b import x", "b.py": "def f():\n    from . import a"},
            [["pkg.a", "pkg.b"]],
        ),
        (
            {"a.py": "from .b import x", "b.py": "from .c import x", "c.py": "import pkg.a"},
            [["pkg.a", "pkg.b", "pkg.c"]],
        ),
        (
            {
                "a.py": "from .b import x",
                "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y",
            },
            [],
        ),
        ({"s/__init__.py": "from .m import x", "s/m.py": "from .. import a", "a.py": ""}, []),
        (
            {"s/__init__.py": "from .m import x", "s/m.py": "from ..s import other"},
            [["pkg.s", "pkg.s.m"]],
        ),
        ({"a.py": "import torch\nfrom .b import x", "b.py": ""}, []),
    ],
)
def test_the_reader_finds_each_kind_of_cycle(tmp_path, files, expected):
    """The check itself: direct, function-level and longer cycles are found; annotation-only
    imports, a package's module importing a sibling and outside packages are not cycles."""
    assert cycles(import_graph(_tree(tmp_path, files))) == expected
