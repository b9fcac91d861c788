"""``RandomGridNP.calibrate`` called twice gives the multipliers of one call (its docstring):
it fits on the unscaled variances, never a scale on top of a scale."""

from __future__ import annotations

import torch

from bayesphys.problems.rgnp import poisson_test_set
from tests.tiny_models import tiny_rgnp


def test_calibrate_twice_is_calibrate_once():
    m = tiny_rgnp(dtype=torch.float64)
    m.fit(steps=3, progress=False)
    val = poisson_test_set(20, seed=3, n_nodes=21)
    args = (val["x"], val["u"], val["z"], val["w"])
    first = m.calibrate(*args)
    post = m.posterior(val["x"], z=val["z"][:2], w=val["w"][:2])
    assert first["field"] != 1.0 and first["parameters"] != 1.0  # a scale that could compound
    assert m.calibrate(*args) == first
    assert m.variance_scale == {"field": first["field"], "parameters": first["parameters"]}
    again = m.posterior(val["x"], z=val["z"][:2], w=val["w"][:2])
    assert torch.equal(again.variance, post.variance)
