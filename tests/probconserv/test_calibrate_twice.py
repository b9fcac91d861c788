"""``ProbConserv.calibrate`` called twice gives the calibration of one call (its docstring):
each call fits on the uncalibrated Step 1 and replaces the calibration in force."""

from __future__ import annotations

import pytest
import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme import make_dataset


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    m = ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=0)
    m.fit(steps=3, progress=False)
    return m


def test_a_scalar_calibration_twice_is_one(model):
    val = make_dataset("diffusion", 12, seed=5)
    first = model.calibrate(val)
    assert first != 1.0  # a scale that could compound
    assert model.calibrate(val) == first and model.var_scale == first


def test_a_hybrid_calibration_twice_is_one_and_a_scalar_one_replaces_it(model):
    ctx = make_dataset("diffusion", 2, seed=3)
    beta = model.calibrate(n_functions=12, objective="hybrid")
    post = model.posterior(ctx, seed=1)
    assert model.calibrate(n_functions=12, objective="hybrid") == beta
    again = model.posterior(ctx, seed=1)
    assert torch.equal(again.mean, post.mean) and torch.equal(again.variance, post.variance)
    # the scalar objective replaces the hybrid calibration instead of stacking on it
    scale = model.calibrate(make_dataset("diffusion", 12, seed=5))
    assert model.calibration is None and model.var_scale == scale
