"""``bayesphys.problems.fisher_kolmogorov`` is a facade over three private modules: every name
it exported keeps its import path, is the implementation's own object, and pickles (functions
pickle by reference) to a path that loads, the old qualified path included."""

from __future__ import annotations

import importlib
import pickle

import pytest

import bayesphys.problems.fisher_kolmogorov as fk

# where each exported name (and the private one bayesphys.odil.glioma imports) is defined
HOMES = {
    "tissue_faces": "_fk_geometry",
    "initial_condition": "_fk_geometry",
    "stable_steps": "_fk_stability",
    "max_step": "_fk_stability",
    "max_steps": "_fk_stability",
    "SCHEMES": "_fk_stability",
    "logistic_step": "_fk_solver",
    "fk_forward": "_fk_solver",
    "_fk_forward": "_fk_solver",
    "fk_residual": "_fk_solver",
    "fk_forward_tangent": "_fk_solver",
}


def test_every_name_is_exported_and_is_its_modules_object():
    assert set(fk.__all__) == set(HOMES) - {"_fk_forward"}
    for name, home in HOMES.items():
        module = importlib.import_module(f"bayesphys.problems.{home}")
        assert getattr(fk, name) is getattr(module, name), name
        assert name.startswith("_") or name in module.__all__, (name, home)


@pytest.mark.parametrize("name", sorted(set(HOMES) - {"SCHEMES"}))
def test_functions_pickle_and_the_old_path_still_loads(name):
    func = getattr(fk, name)
    assert pickle.loads(pickle.dumps(func)) is func
    # a pickle written before the split names the facade's path (protocol 0: module, name)
    old = f"cbayesphys.problems.fisher_kolmogorov\n{name}\n.".encode()
    assert pickle.loads(old) is func
