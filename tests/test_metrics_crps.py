"""``bayesphys.metrics.crps``: the design's one ``crps`` for any posterior or draws (it was
missing: only ``crps_gaussian`` and ``crps_samples`` existed, ``from bayesphys.metrics import
crps`` failed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from bayesphys import GaussianPosterior, SamplePosterior
from bayesphys.metrics import crps, crps_samples

F64 = torch.float64


def _gaussian_crps(mu: float, sd: float, y: float) -> float:
    """The closed form from scipy's normal law (Gneiting & Raftery 2007, eq. 21)."""
    if sd == 0:
        return abs(y - mu)
    z = (y - mu) / sd
    return sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / math.sqrt(math.pi))


def test_gaussian_posterior_scores_the_closed_form_and_a_point_mass_where_variance_is_zero():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(2, 3, generator=g, dtype=F64)
    var = torch.rand(2, 3, generator=g, dtype=F64) + 0.1
    var[0, 0] = 0.0  # a fixed boundary value
    y = torch.randn(2, 3, generator=g, dtype=F64)
    post = GaussianPosterior(mean.reshape(-1), torch.diag(var.reshape(-1)))
    want = np.mean(
        [
            _gaussian_crps(float(m), math.sqrt(float(v)), float(t))
            for m, v, t in zip(mean.reshape(-1), var.reshape(-1), y.reshape(-1))
        ]
    )
    assert float(crps(post, y.reshape(-1))) == pytest.approx(want, rel=1e-12)
    per_point = crps(post, y.reshape(-1), dim=0)
    assert float(per_point) == pytest.approx(want, rel=1e-12)


def test_other_posteriors_and_draws_score_the_sample_crps():
    g = torch.Generator().manual_seed(1)
    draws = torch.randn(1, 300, 3, 4, generator=g, dtype=F64)
    post = SamplePosterior(draws, event_ndim=2)
    y = torch.randn(3, 4, generator=g, dtype=F64)
    assert torch.equal(
        crps(post, y, num_samples=64, seed=3), crps_samples(post.sample(64, seed=3), y)
    )
    assert torch.equal(crps(draws[0], y), crps_samples(draws[0], y))
    assert crps(post, y, dim=(0, 1), num_samples=8).shape == ()


def test_bad_input_is_refused_by_name():
    post = GaussianPosterior(torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64))
    with pytest.raises(ValueError, match="y: expected shape"):
        crps(post, torch.zeros(4, dtype=F64))
    with pytest.raises(TypeError, match="posterior_or_samples"):
        crps("draws", torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="num_samples"):
        crps(SamplePosterior(torch.zeros(1, 5, 3), event_ndim=1), torch.zeros(3), num_samples=0)
    with pytest.raises(ValueError, match="y"):
        crps(post, torch.tensor([0.0, float("nan"), 1.0], dtype=F64))


def test_gaussian_posterior_crps_is_differentiable_in_its_mean_and_variance():
    mean = torch.tensor([0.3, -0.2], dtype=F64, requires_grad=True)
    var = torch.tensor([0.5, 0.0], dtype=F64, requires_grad=True)  # one fixed point
    post = GaussianPosterior(mean, torch.diag(var))
    crps(post, torch.tensor([1.0, 0.4], dtype=F64)).backward()
    # d/dmu of the closed form is 2 Phi(z) - 1 scaled by -1; of |y - mu| it is -sign(y - mu)
    z = (1.0 - 0.3) / math.sqrt(0.5)
    assert float(mean.grad[0]) == pytest.approx(-(2 * stats.norm.cdf(z) - 1) / 2, rel=1e-10)
    assert float(mean.grad[1]) == pytest.approx(-0.5, rel=1e-12)
    assert torch.isfinite(var.grad).all() and float(var.grad[1]) == 0.0
    assert float(var.grad[0]) != 0.0
