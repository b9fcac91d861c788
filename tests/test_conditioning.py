"""Ill-conditioned but valid covariances: round-off of singular factors is not a user error."""

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
