"""Numerical edge cases of the shared core: structured roots and the MMD far from the origin."""

from __future__ import annotations

import warnings

import pytest
import scipy.stats
import torch
from linear_operator.operators import (
    ConstantDiagLinearOperator,
    DenseLinearOperator,
    KroneckerProductAddedDiagLinearOperator,
    KroneckerProductLinearOperator,
)

from bayesphys import GaussianPosterior
from bayesphys.metrics import mmd

F64 = torch.float64


def _kron_plus_diag(a, b, d):
    kron = KroneckerProductLinearOperator(DenseLinearOperator(a), DenseLinearOperator(b))
    return KroneckerProductAddedDiagLinearOperator(
        kron, ConstantDiagLinearOperator(torch.tensor([d], dtype=F64), a.shape[0] * b.shape[0])
    )


def test_kron_plus_diag_with_negative_definite_factors_is_exact():
    # A, B negative definite: A (x) B is positive definite; clamping each factor's eigenvalues
    # at 0 first turned the covariance into d I (draws and log density of the wrong matrix)
    a = -torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)
    b = -torch.eye(2, dtype=F64)
    cov = _kron_plus_diag(a, b, 0.5)
    dense = torch.kron(a, b) + 0.5 * torch.eye(4, dtype=F64)
    post = GaussianPosterior(torch.zeros(4, dtype=F64), cov)
    v = torch.tensor([0.3, -1.0, 0.7, 0.2], dtype=F64)
    ref = scipy.stats.multivariate_normal(cov=dense.numpy()).logpdf(v.numpy())
    assert float(post.log_prob(v)) == pytest.approx(ref, rel=1e-12)
    draws = post.sample((4000,), generator=torch.Generator().manual_seed(0))
    emp = torch.cov(draws.T)
    assert torch.allclose(emp, dense, atol=0.15)


def test_kron_plus_diag_needs_a_positive_definite_sum_only():
    a = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64)  # eigenvalues 3, -1
    bad = _kron_plus_diag(a, torch.eye(2, dtype=F64), 0.5)  # eigenvalues 3.5, -0.5: refused
    with pytest.raises(ValueError, match="not positive definite"):
        GaussianPosterior(torch.zeros(4, dtype=F64), bad).sample(
            (2,), generator=torch.Generator().manual_seed(0)
        )
    # an indefinite Kronecker part whose sum is positive definite: exact, as the dense root
    k = torch.diag(torch.tensor([1.0, -0.5], dtype=F64))
    ok = _kron_plus_diag(k, torch.eye(2, dtype=F64), 1.0)  # eigenvalues 2, 2, 0.5, 0.5
    dense = torch.kron(k, torch.eye(2, dtype=F64)) + torch.eye(4, dtype=F64)
    v = torch.tensor([0.3, -1.0, 0.7, 0.2], dtype=F64)
    got = GaussianPosterior(torch.zeros(4, dtype=F64), ok).log_prob(v)
    ref = GaussianPosterior(torch.zeros(4, dtype=F64), dense).log_prob(v)
    assert float(got) == pytest.approx(float(ref), rel=1e-12)


def test_singular_dense_covariance_warns_that_the_density_is_the_jittered_ones():
    post = GaussianPosterior(torch.zeros(2, dtype=F64), torch.ones(2, 2, dtype=F64))
    # sampling: no warning (a float64 jitter is 1e-5 of the mean variance at most)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        draws = post.sample((3,), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(draws[:, 0], draws[:, 1], atol=1e-4)
    with pytest.warns(RuntimeWarning, match="singular to working precision"):
        post.log_prob(torch.ones(2, dtype=F64))
    regular = GaussianPosterior(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        regular.log_prob(torch.ones(2, dtype=F64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mmd_is_translation_invariant_far_from_the_origin(dtype):
    g = torch.Generator().manual_seed(0)
    x = 0.01 * torch.randn(40, 2, generator=g, dtype=F64)
    y = 0.01 * torch.randn(40, 2, generator=g, dtype=F64) + 0.005
    near = float(mmd(x, y, bandwidths=[1e-4, 1e-3]))
    far = float(mmd((x + 1e4).to(dtype), (y + 1e4).to(dtype), bandwidths=[1e-4, 1e-3]))
    # float32 holds 1e4 + 0.01 z to ~1e-3 absolute: the distances keep ~10 % of their digits
    tol = 1e-9 if dtype == F64 else 0.1
    assert far == pytest.approx(near, rel=tol)


def test_stefan_constants_next_to_one():
    import math

    from bayesphys.problems.gpme import stefan_constants

    us = torch.tensor([1 - 2**-53, 1 - 2**-50, 0.6], dtype=F64)
    alpha, _ = stefan_constants(us)
    z = alpha / 2
    lhs = us * torch.erf(z) * z * torch.exp(z * z)
    rhs = (1 - us) / math.sqrt(math.pi)
    # the root itself: z1 was stuck at the old lower bracket 1e-8 for u* = 1 - 2**-53
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=0)


def test_mmd_over_row_blocks_equals_the_whole_kernel_mean():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1500, 2, generator=g, dtype=F64)  # two row blocks of 1024
    y = torch.randn(1100, 2, generator=g, dtype=F64) + 0.1
    hs = (0.1, 1.0)

    def kmean(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(torch.exp(-d2 / h) for h in hs).mean()

    ref = kmean(x, x) + kmean(y, y) - 2 * kmean(x, y)
    assert float(mmd(x, y, bandwidths=hs)) == pytest.approx(float(ref), rel=1e-10)
