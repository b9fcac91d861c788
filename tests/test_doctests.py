"""Run the docstring examples of the public modules (keeps the docs true)."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import bayesphys

# top-level packages of the optional extras (pyproject: ``distributed``, ``atlas``); a module
# whose import fails on one of these is skipped, any other ImportError fails the test
_OPTIONAL = {"ray", "dask", "distributed", "nilearn"}


def _modules() -> list[str]:
    """The package's modules whose source holds a ``>>>`` example (found without importing)."""
    names = []
    for info in pkgutil.walk_packages(bayesphys.__path__, prefix="bayesphys."):
        if ".examples." in info.name or info.name.endswith("__main__"):
            continue
        spec = importlib.util.find_spec(info.name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        if ">>>" in Path(spec.origin).read_text(encoding="utf-8"):
            names.append(info.name)
    return sorted(names)


_WITH_EXAMPLES = _modules()


def test_modules_with_examples_are_found():
    # an empty scan would leave nothing parametrised and pass silently
    assert len(_WITH_EXAMPLES) >= 10
    assert {"bayesphys._model", "bayesphys.posterior", "bayesphys.metrics"} <= set(_WITH_EXAMPLES)


@pytest.mark.parametrize("name", _WITH_EXAMPLES)
def test_docstring_examples(name):
    try:
        mod = importlib.import_module(name)
    except ImportError as err:
        if (err.name or "").split(".")[0] not in _OPTIONAL:
            raise
        pytest.skip(f"{name}: optional extra {err.name} not installed")
    res = doctest.testmod(
        mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert res.attempted > 0, f"{name} holds '>>>' but doctest found no example to run"
    assert res.failed == 0, f"{res.failed} docstring example(s) failed in {name}"
