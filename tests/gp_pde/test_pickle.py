"""GPPDESolver and the problems pickle: registered ones as their name, modified copies of them
with their (module-level) exact solution."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
import torch

from bayesphys.gp_pde import GPPDESolver
from bayesphys.problems.gp_pde import get_problem


def test_registered_problems_pickle_as_their_name():
    p = get_problem("poisson1d-low")
    assert pickle.loads(pickle.dumps(p)) is p
    assert copy.deepcopy(p) is p  # frozen: the registered object itself
    # a modified copy is not the registered problem: it pickles by value (its exact solution
    # was a lambda, and a solver built on the copy could not be sent to a process pool)
    mine = dataclasses.replace(p, name="mine", n_col=10)
    back = pickle.loads(pickle.dumps(mine))
    assert back == mine and back is not p
    # a user's own lambda still cannot be pickled: the error names it
    with pytest.raises((pickle.PicklingError, AttributeError), match="lambda"):
        pickle.dumps(dataclasses.replace(p, exact=lambda x: x))


def test_a_solver_on_a_modified_problem_pickles(tmp_path):
    """dataclasses.replace of a registered problem kept its lambda exact solution: the solver
    fitted and saved, but pickle (process pools, joblib, Ray) failed (review of 2026-12-03)."""
    mine = dataclasses.replace(get_problem("poisson1d-low"), name="my-poisson", n_col=32)
    m = GPPDESolver(mine, num_mixtures=2, seed=0)
    m.fit(steps=2, progress=False)
    back = pickle.loads(pickle.dumps(m))
    assert torch.equal(back.predict(), m.predict()) and back.rel_l2() == m.rel_l2()


def test_solver_round_trips_through_pickle(tmp_path):
    m = GPPDESolver("poisson1d-low", num_mixtures=2, seed=0)
    m.fit(steps=3, progress=False)
    back = pickle.loads(pickle.dumps(m))
    assert torch.equal(back.predict(), m.predict())
    back.save(tmp_path / "m.pt")  # still the registered problem: a checkpoint can name it
    assert torch.equal(GPPDESolver.load(tmp_path / "m.pt").predict(), m.predict())
