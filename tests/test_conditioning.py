"""Ill-conditioned but valid covariances: round-off of singular factors is not a user error."""

import warnings

import pytest
import torch
from linear_operator.operators import (
    ConstantDiagLinearOperator,
    DenseLinearOperator,
    KroneckerProductAddedDiagLinearOperator,
    KroneckerProductLinearOperator,
)

from bayesphys import GaussianPosterior


def _smooth_factor(n: int, dtype: torch.dtype) -> torch.Tensor:
    # a squared-exponential kernel of length scale 1 on [0, 1]: numerically rank ~ 10, its
    # other eigenvalues round-off of either sign
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    return torch.exp(-0.5 * (x[:, None] - x[None, :]) ** 2).to(dtype)


def test_float32_kron_plus_small_nugget_is_accepted():
    # K1 (x) K2 + d I with PSD smooth factors and d > 0 is positive definite; in float32 the
    # factors' eigenvalues came back as -1e-6 of their largest, whose products with the other
    # factor's largest (~ -6e-5) exceeded the nugget: refused as "not positive definite"
    n, d = 40, 1e-8
    k = _smooth_factor(n, torch.float32)
    kron = KroneckerProductLinearOperator(DenseLinearOperator(k), DenseLinearOperator(k))
    cov = KroneckerProductAddedDiagLinearOperator(
        kron, ConstantDiagLinearOperator(torch.tensor([d], dtype=torch.float32), n * n)
    )
    post = GaussianPosterior(torch.zeros(n * n), cov)
    draws = post.sample((64,), seed=0)
    assert torch.isfinite(draws).all()
    # marginal variances 1 + d; the draws' spread agrees
    assert torch.allclose(post.variance, torch.full((n * n,), 1.0 + d), rtol=1e-5)
    assert 0.6 < float(draws.var(0).mean()) < 1.4
    lp = post.log_prob(draws[:4])
    assert torch.isfinite(lp).all()


def test_kron_plus_diag_refusal_names_the_diagonal_and_remedy():
    # an indefinite Kronecker part (beyond round-off) is still refused, with the remedy
    a = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    kron = KroneckerProductLinearOperator(
        DenseLinearOperator(a), DenseLinearOperator(torch.eye(2, dtype=torch.float64))
    )
    cov = KroneckerProductAddedDiagLinearOperator(
        kron, ConstantDiagLinearOperator(torch.tensor([0.5], dtype=torch.float64), 4)
    )
    with pytest.raises(ValueError, match="constant diagonal"):
        GaussianPosterior(torch.zeros(4, dtype=torch.float64), cov)


def _conditioned_covariances(n: int = 50):
    """Covariances conditioned exactly on their mass (rank N - 1 in exact arithmetic; their
    smallest eigenvalue is round-off of either sign), for a few scales of the prior."""
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    k = torch.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / 0.2**2) + 1e-6 * torch.eye(
        n, dtype=torch.float64
    )
    g = torch.full((1, n), 1.0 / n, dtype=torch.float64)
    for j in range(50):
        ks = (1.0 + 1e-3 * j) * k
        c = ks - (ks @ g.T) @ torch.linalg.solve(g @ ks @ g.T, g @ ks)
        yield 0.5 * (c + c.T)


def test_log_prob_of_a_singular_covariance_factorised_without_jitter_warns():
    # whether a covariance conditioned exactly on a constraint needs the jitter is itself
    # round-off: those that did warned that their density is the jittered matrix's, those
    # whose Cholesky happened to succeed gave a density set by round-off (log det ~ log 1e-16
    # along the constraint) without a word
    lucky = [c for c in _conditioned_covariances() if not torch.linalg.cholesky_ex(c)[1]]
    assert lucky  # about half of them on the platforms tried
    post = GaussianPosterior(torch.zeros(50, dtype=torch.float64), lucky[0])
    with pytest.warns(RuntimeWarning, match="singular to working precision"):
        lp = post.log_prob(torch.zeros(50, dtype=torch.float64))
    assert torch.isfinite(lp)


def test_log_prob_of_a_well_conditioned_covariance_does_not_warn():
    x = torch.linspace(0, 1, 50, dtype=torch.float64)
    k = torch.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / 0.2**2) + 1e-3 * torch.eye(
        50, dtype=torch.float64
    )
    post = GaussianPosterior(torch.zeros(50, dtype=torch.float64), k)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        lp = post.log_prob(torch.zeros(50, dtype=torch.float64))
    ref = torch.distributions.MultivariateNormal(torch.zeros(50, dtype=torch.float64), k)
    torch.testing.assert_close(lp, ref.log_prob(torch.zeros(50, dtype=torch.float64)))


def test_log_prob_of_a_kronecker_covariance_with_such_a_factor_warns():
    lucky = [c for c in _conditioned_covariances() if not torch.linalg.cholesky_ex(c)[1]]
    assert lucky
    cov = KroneckerProductLinearOperator(
        DenseLinearOperator(lucky[0]), DenseLinearOperator(torch.eye(2, dtype=torch.float64))
    )
    post = GaussianPosterior(torch.zeros(100, dtype=torch.float64), cov)
    with pytest.warns(RuntimeWarning, match="singular to working precision"):
        lp = post.log_prob(torch.zeros(100, dtype=torch.float64))
    assert torch.isfinite(lp)
