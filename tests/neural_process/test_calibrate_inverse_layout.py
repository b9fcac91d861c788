"""calibrate_variance with per-instance inverse layouts (x_inverse / u_inverse)."""

from __future__ import annotations

import pytest
import torch

from bayesphys.neural_process import burgers_inverse_inputs
from bayesphys.problems.rgnp import burgers_test_set, poisson_test_set
from tests.tiny_models import tiny_rgnp


def test_inverse_layout_sets_parameter_coverage_on_that_layout():
    m = tiny_rgnp(dtype=torch.float64)
    m.fit(steps=2, progress=False)
    val = poisson_test_set(30, seed=5, n_nodes=41)
    g = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randperm(39, generator=g)[:12] + 1 for _ in range(30)]).numpy()
    xin = val["x"][idx][..., None]
    uin = val["u"][torch.arange(30)[:, None].numpy(), idx]
    out = m.calibrate(val["x"], val["u"], val["z"], val["w"], x_inverse=xin, u_inverse=uin)
    post = m.parameter_posterior(xin, uin, val["w"])
    inside = ((post.mean - torch.as_tensor(val["z"])).abs() <= 2 * post.variance.sqrt()).double()
    assert abs(float(inside.mean()) - 0.9545) <= 2.0 / 150 + 1e-9
    assert out["parameters"] > 0
    with pytest.raises(ValueError, match="both or neither"):
        m.calibrate(val["x"], val["u"], val["z"], val["w"], x_inverse=xin)
    with pytest.raises(ValueError, match="x_inverse/u_inverse"):
        m.calibrate(val["x"], val["u"], val["z"], val["w"], x_inverse=xin[:5], u_inverse=uin[:5])


def test_burgers_inverse_inputs_are_interior_reference_values():
    t = burgers_test_set(3, seed=0, n_nodes=41, n_steps=10)
    x, u = burgers_inverse_inputs(t, 7, seed=1)
    assert x.shape == (3, 7, 2) and u.shape == (3, 7)
    assert (x[..., 0] > t["x"][0]).all() and (x[..., 0] < t["x"][-1]).all()
    assert (x[..., 1] > t["t"][0]).all()
    i = int(abs(t["x"] - x[1, 2, 0]).argmin())
    j = int(abs(t["t"] - x[1, 2, 1]).argmin())
    assert u[1, 2] == t["u"][1, j, i]


def test_burgers_inverse_nodes_are_drawn_with_replacement_as_documented():
    """The draw is with replacement (the benchmark's definition): more points than interior
    nodes are accepted and nodes repeat; the docstring says so (it did not)."""
    t = burgers_test_set(2, seed=0, n_nodes=6, n_steps=3)
    interior = (len(t["x"]) - 2) * (len(t["t"]) - 1)
    x, u = burgers_inverse_inputs(t, interior + 5, seed=0)
    assert x.shape == (2, interior + 5, 2)
    assert len({tuple(p) for p in x[0].tolist()}) <= interior  # a node is repeated
    doc = " ".join(burgers_inverse_inputs.__doc__.split())
    assert "with replacement" in doc and "can therefore repeat a node" in doc
