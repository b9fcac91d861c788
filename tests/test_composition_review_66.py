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
        conserve_slices(post, x, torch.tensor(b, dtype=F64))
    # the HardC projection reads no covariance: it shifts the mean and keeps the draws' spread
    hard = hard_projection(post, g, b)
    torch.testing.assert_close(g @ hard.mean, torch.tensor(b, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(hard.variance, post.variance)
    torch.testing.assert_close(
        hard.sample((3,), seed=1) - hard.mean, post.sample((3,), seed=1) - post.mean
    )
    same = conserve_slices(post, x, torch.tensor(b, dtype=F64), method="hardc")
    torch.testing.assert_close(same.mean, hard.mean)


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


@pytest.mark.parametrize("dense_max", [4096, 0])
def test_odil_field_posterior_space_time_update(dense_max):
    """ODIL's Laplace field posterior (event ``(nt, nx)``, dense or low-rank plus diagonal)
    conditioned on one mass row per time slice: the conditioning formula, draws that meet
    every slice's mass, and a clear error for rows of another grid."""
    from bayesphys.odil import DiscreteProblem, d2, field_posterior, minimize

    nt, nx, dt = 4, 8, 0.1
    xs = torch.arange(nx, dtype=F64) / nx
    u0 = torch.sin(2 * torch.pi * xs)

    def residuals(f, p):
        u = f["u"]
        ut = (u[1:] - u[:-1]) / dt
        uxx = 0.5 * (d2(u[1:], 1, 1 / nx) + d2(u[:-1], 1, 1 / nx))
        return {"pde": (ut - 0.01 * uxx) / 0.1, "init": (u[0] - u0) / 0.01}

    prob = DiscreteProblem({"u": (nt, nx)}, {}, residuals, dtype=F64)
    x, _ = minimize(prob, method="gn", steps=3)
    post = field_posterior(prob, x, "u", dense_max=dense_max, num_samples=16)
    g = trapezoid_weights(xs)
    G = torch.block_diag(*[g[None]] * nt)  # [nt, nt * nx]
    b = torch.linspace(0.0, 0.1, nt, dtype=F64)
    out = conservation_update(post, G, b)
    mu, cov = post.mean.reshape(-1), post.covariance.to_dense()
    gain = cov @ G.T @ torch.linalg.inv(G @ cov @ G.T)
    torch.testing.assert_close(out.mean.reshape(-1), mu - gain @ (G @ mu - b))
    draws = out.sample((5,), seed=0)
    assert draws.shape == (5, nt, nx)
    torch.testing.assert_close(draws @ g, b.expand(5, nt), rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match=r"G: expected last dimension 32"):
        conservation_update(post, G[:, :-1], b)
