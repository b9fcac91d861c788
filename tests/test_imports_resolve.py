"""Every ``from bayesphys... import name`` in the repository names something that exists.

Read with :mod:`ast`, so imports inside functions are checked too: a benchmark's function-level
import of a private helper that moved (``_init_worker`` after the split of ``executors.py``) used
to fail only when that branch of the benchmark ran. The benchmark scripts' imports of their
helper modules (``from _odil_common import ...``) are checked the same way.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TREES = ("bayesphys", "tests", "benchmarks", "examples", "docs")


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every absolute ``from module import names`` in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        (node.lineno, node.module, [a.name for a in node.names if a.name != "*"])
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    ]


def _missing(module: str, names: list[str]) -> list[str]:
    """The names that ``module`` neither defines nor has as a submodule."""
    mod = importlib.import_module(module)
    gone = []
    for name in names:
        if hasattr(mod, name):
            continue
        try:
            importlib.import_module(f"{module}.{name}")
        except ImportError:
            gone.append(name)
    return gone


def _files() -> list[Path]:
    return [p for t in TREES if (REPO / t).is_dir() for p in sorted((REPO / t).rglob("*.py"))]


def test_the_reader_finds_function_level_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f():\n    from bayesphys.x import y, z\n")
    assert _imports(src) == [(4, "bayesphys.x", ["y", "z"])]


def test_missing_names_are_reported():
    assert _missing("bayesphys", ["GaussianPosterior", "no_such_name"]) == ["no_such_name"]
    assert _missing("bayesphys", ["diagnostics"]) == []  # a submodule counts


def test_every_package_import_resolves():
    files = _files()
    if not (REPO / "benchmarks").is_dir():
        pytest.skip("not a source checkout (no benchmarks/ beside tests/)")
    broken = []
    for path in files:
        for line, module, names in _imports(path):
            if module.split(".")[0] != "bayesphys":
                continue
            gone = _missing(module, names)
            if gone:
                broken.append(f"{path.relative_to(REPO)}:{line}: {module} has no {gone}")
    assert not broken, "\n".join(broken)


def test_benchmark_helper_imports_resolve(monkeypatch):
    bench = REPO / "benchmarks"
    if not bench.is_dir():
        pytest.skip("not a source checkout")
    local = {p.stem for p in bench.glob("*.py")}
    monkeypatch.syspath_prepend(str(bench))
    before = set(sys.modules)
    broken = []
    try:
        for path in sorted(bench.glob("*.py")):
            for line, module, names in _imports(path):
                if module not in local:
                    continue
                gone = _missing(module, names)
                if gone:
                    broken.append(f"{path.name}:{line}: {module} has no {gone}")
    finally:  # leave no benchmark module behind (odil.py would shadow the odil package)
        for name in set(sys.modules) - before:
            if name.split(".")[0] in local:
                del sys.modules[name]
    assert not broken, "\n".join(broken)
