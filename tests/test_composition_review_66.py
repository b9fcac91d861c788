"""Components composed as a user would: one component's posterior as the input of another's
update or of the shared tools."""

import copy
import pickle

import pytest
import torch

from bayesphys.gp_pde import GPPDESolver
from bayesphys.probconserv import (
    conservation_update,
    conserve_slices,
    hard_projection,
    trapezoid_weights,
)

F64 = torch.float64


def _exact(x):
    return torch.sin(3 * x) + x


@pytest.fixture(scope="module")
def solver():
    x = torch.linspace(0.0, 1.0, 16, dtype=F64)
    return GPPDESolver(
        x=x,
        source=lambda x: -9 * torch.sin(3 * x),
        boundary=_exact,
        num_mixtures=2,
        seed=0,
        dtype=F64,
    ), x


def test_gp_pde_posterior_refused_by_conservation_update(solver):
    """The test-grid posterior's covariance is only the diagonal of its marginal variances
    (its draws are correlated): conditioning on it gave a mean off by the missing
    correlations and a variance that disagreed with its own draws, silently."""
    m, x = solver
    post = m.posterior(x)
    g = trapezoid_weights(x)
    b = float(g @ _exact(x))
    moved = [post, post.to("cpu"), pickle.loads(pickle.dumps(post)), copy.deepcopy(post)]
    for p in moved:
        with pytest.raises(ValueError, match=r"prior: .*marginal variances.*field_posterior"):
            conservation_update(p, g, b)
        with pytest.raises(ValueError, match=r"prior: .*field_posterior"):
            hard_projection(p, g, b)
    with pytest.raises(ValueError, match=r"prior: .*field_posterior"):
        conserve_slices(post, x, torch.tensor(b, dtype=F64))


def test_gp_pde_field_posterior_update_is_the_conditioning_formula(solver):
    """The joint field posterior goes through the update, which is the Gaussian conditioning
    formula, and its draws have the updated covariance."""
    m, x = solver
    fp = m.field_posterior()
    g = trapezoid_weights(x)
    b = float(g @ _exact(x))
    for sigma in (0.0, 0.01):
        out = conservation_update(fp, g, b, sigma_g=sigma)
        mu, cov = fp.mean, fp.covariance.to_dense()
        s = g @ cov @ g + sigma**2
        k = cov @ g / s
        want_mean = mu - k * (g @ mu - b)
        want_cov = cov - torch.outer(k, g @ cov)
        torch.testing.assert_close(out.mean, want_mean, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(out.covariance.to_dense(), want_cov, rtol=1e-6, atol=1e-12)
        d = out.sample((20000,), seed=0)
        emp = torch.cov(d.mT)
        scale = float(want_cov.diagonal().max())
        assert float((emp - want_cov).abs().max()) < 0.05 * scale
