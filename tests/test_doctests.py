"""Run the docstring examples of the public modules (keeps the docs true)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import bayesphys


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(bayesphys.__path__, prefix="bayesphys."):
        if ".examples." in info.name or info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    try:
        mod = importlib.import_module(name)
    except ImportError as err:  # optional extras (e.g. ray) not installed
        pytest.skip(f"{name}: {err}")
    res = doctest.testmod(
        mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert res.failed == 0, f"{res.failed} docstring example(s) failed in {name}"
