"""GPPDESolver and the registered problems pickle (their exact solutions are lambdas)."""

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
    # a modified copy is not the registered problem: its lambda still cannot be pickled
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(dataclasses.replace(p, n_col=10))


def test_solver_round_trips_through_pickle(tmp_path):
    m = GPPDESolver("poisson1d-low", num_mixtures=2, seed=0)
    m.fit(steps=3, progress=False)
    back = pickle.loads(pickle.dumps(m))
    assert torch.equal(back.predict(), m.predict())
    back.save(tmp_path / "m.pt")  # still the registered problem: a checkpoint can name it
    assert torch.equal(GPPDESolver.load(tmp_path / "m.pt").predict(), m.predict())
