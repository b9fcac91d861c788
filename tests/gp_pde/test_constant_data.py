"""A constant source or boundary given as a number (``boundary=0.0``, homogeneous Dirichlet),
or returned as one by a callable, is the constant field: it was refused as values of shape ()."""

from __future__ import annotations

import pytest
import torch

from bayesphys.gp_pde import GPPDESolver

F64 = torch.float64


@pytest.mark.parametrize(
    "source, boundary",
    [
        (-2.0, 0.0),
        (lambda x: -2.0, lambda x: 0),
        (torch.tensor(-2.0, dtype=F64), torch.tensor(0.0)),
    ],
)
def test_a_number_is_the_constant_field(source, boundary):
    x = torch.linspace(0, 1, 24, dtype=F64)
    ref = GPPDESolver(
        x=x, source=torch.full((24,), -2.0, dtype=F64), boundary=torch.zeros(24), num_mixtures=2
    )
    m = GPPDESolver(x=x, source=source, boundary=boundary, num_mixtures=2)
    assert torch.equal(m.f, ref.f) and m.f.dtype == F64
    assert torch.equal(m.g, ref.g)
    m.fit(steps=40, progress=False)
    ref.fit(steps=40, progress=False)
    exact = x * (1 - x)  # u'' = -2, u(0) = u(1) = 0
    post = m.posterior(x)
    assert torch.equal(post.mean, ref.posterior(x).mean)
    assert float((post.mean - exact).norm() / exact.norm()) < 1e-2


def test_a_constant_in_2d_fills_the_grid():
    axes = [torch.linspace(0, 1, 6, dtype=F64), torch.linspace(0, 2, 5, dtype=F64)]
    m = GPPDESolver(x=axes, source=1.5, boundary=0.25, num_mixtures=2)
    assert m.f.shape == (6, 5) and bool((m.f == 1.5).all())
    assert m.g.shape == (2 * (6 + 5),) and bool((m.g == 0.25).all())  # the four faces


def test_a_non_scalar_of_the_wrong_shape_is_still_refused():
    x = torch.linspace(0, 1, 8, dtype=F64)
    with pytest.raises(ValueError, match=r"source: expected values of shape \(8,\)"):
        GPPDESolver(x=x, source=torch.ones(3), boundary=0.0, num_mixtures=2)
