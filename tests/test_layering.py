"""The layering of ARCHITECTURE.md: a component imports the shared core and libraries only.

Each of the five components (``gp_pde``, ``probconserv``, ``neural_process``, ``odil``,
``meta_fm``) may import the shared core (the top-level private modules, ``posterior``,
``inference_data``, ``metrics``, ``diagnostics``, ``problems``) but never another component,
nor the layers built on top of the components (``distributed``, ``examples``, ``cli``).
Read from the source with :mod:`ast`, so imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bayesphys

PACKAGE = Path(bayesphys.__file__).parent
COMPONENTS = ("gp_pde", "probconserv", "neural_process", "odil", "meta_fm")
ABOVE_THE_COMPONENTS = ("distributed", "examples", "cli")


def _imported_bayesphys_modules(source: str, module: str) -> set[str]:
    """First-level ``bayesphys`` names that ``source`` (the text of dotted ``module``) imports."""
    parts = module.split(".")
    package = parts if module.endswith(".__init__") else parts[:-1]
    package = [p for p in package if p != "__init__"]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(package[: len(package) - (node.level - 1)])
            # ``from .. import x`` imports submodule (or name) x of the base package
            targets = (
                [f"{base}.{node.module}"]
                if node.module
                else [f"{base}.{a.name}" for a in node.names]
            )
        elif isinstance(node, ast.ImportFrom):
            targets = [node.module or ""]
        for t in targets:
            bits = t.split(".")
            if bits[0] == "bayesphys" and len(bits) > 1:
                names.add(bits[1])
    return names


def _module_name(path: Path) -> str:
    return ".".join(["bayesphys", *path.relative_to(PACKAGE).with_suffix("").parts])


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_component_imports_only_the_shared_core(component):
    forbidden = (set(COMPONENTS) | set(ABOVE_THE_COMPONENTS)) - {component}
    offending = {}
    for path in sorted((PACKAGE / component).rglob("*.py")):
        bad = _imported_bayesphys_modules(path.read_text(), _module_name(path)) & forbidden
        if bad:
            offending[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert not offending, f"{component} imports outside the shared core: {offending}"


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("from ..gp_pde import x", "bayesphys.odil.model", {"gp_pde"}),
        ("from ..distributed.data_parallel import G", "bayesphys.meta_fm.model", {"distributed"}),
        ("import bayesphys.distributed", "bayesphys.odil.model", {"distributed"}),
        ("from .. import cli", "bayesphys.odil.model", {"cli"}),
        ("from ... import cli", "bayesphys.odil.sub.model", {"cli"}),
        ("from .sparse import x", "bayesphys.odil.model", {"odil"}),
        ("from .model import x", "bayesphys.odil.__init__", {"odil"}),
        ("def f():\n    from ..meta_fm import m", "bayesphys.odil.model", {"meta_fm"}),
        ("import torch", "bayesphys.odil.model", set()),
    ],
)
def test_the_reader_resolves_each_spelling_of_an_import(source, module, expected):
    """The check itself: relative, absolute and function-level imports are all resolved."""
    assert _imported_bayesphys_modules(source, module) == expected
