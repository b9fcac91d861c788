"""One lookup of a component's hook module, shared by the command line and the calibration
suite (each had its own copy of the find_spec / import steps)."""

from __future__ import annotations

import importlib.util

import pytest

from bayesphys import cli
from bayesphys._hooks import component_hook
from bayesphys.diagnostics import suite


@pytest.mark.parametrize("hook", ["_demo", "_calibration"])
def test_component_hook_imports_each_components_hook(hook):
    for comp in cli.COMPONENTS:
        mod = component_hook(comp, hook)
        assert mod is not None and mod.__name__ == f"bayesphys.{comp}.{hook}"
    assert component_hook("gp_pde", "_no_such_hook") is None
    assert component_hook("no_such_component", hook) is None


def test_component_hook_reads_an_absent_or_broken_component_as_no_hook(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *a):
        if name == "bayesphys.odil":  # not installed
            return None
        if name.startswith("bayesphys.meta_fm"):  # its package's own import fails
            raise ModuleNotFoundError("No module named 'a_missing_dependency'")
        return real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert component_hook("odil", "_demo") is None
    assert component_hook("meta_fm", "_calibration") is None
    assert component_hook("gp_pde", "_demo") is not None


def test_the_cli_and_the_suite_use_the_one_lookup(monkeypatch):
    import bayesphys.diagnostics.suite as suite_module

    assert cli._component_module is component_hook
    asked = []
    monkeypatch.setattr(
        suite_module, "component_hook", lambda comp, hook: asked.append((comp, hook)) or "mod"
    )
    assert suite.load_hook("odil") == "mod" and asked == [("odil", "_calibration")]
