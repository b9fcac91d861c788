"""GaussianPosterior with the covariance a user builds from linear_operator's operators.

A LinearOperator built without tensors has no device (``IdentityLinearOperator(n).device is
None``): GaussianPosterior read ``.device.type`` of it and failed with "'NoneType' object has no
attribute 'type'"; it is put on the mean's device. ``ZeroLinearOperator`` densifies to float32
whatever its dtype, and the first draw of a float64 posterior failed with "expected m1 and m2
to have the same dtype"; it is a point mass in the mean's dtype. The other operators a user
may pass (sums, roots, block-diagonal, Toeplitz, Kronecker plus diagonal, products) give the
variances and draws of their dense matrix."""

from __future__ import annotations

import linear_operator.operators as lo
import pytest
import torch
from linear_operator.operators import IdentityLinearOperator

from bayesphys import GaussianPosterior


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_covariance_without_device(dtype: torch.dtype) -> None:
    cov = IdentityLinearOperator(5, dtype=torch.float64)
    assert cov.device is None
    mean = torch.arange(5, dtype=dtype)
    post = GaussianPosterior(mean, cov)
    assert post.dtype == dtype and post.device == mean.device
    torch.testing.assert_close(post.variance, torch.ones(5, dtype=dtype))
    draws = post.sample((4000,), seed=0)
    assert draws.shape == (4000, 5) and draws.dtype == dtype
    # N(mean, I): the draws' mean within 5 standard errors of it
    assert float((draws.mean(0) - mean).abs().max()) < 5 / 4000**0.5
    want = torch.distributions.Normal(mean.double(), 1.0).log_prob(torch.zeros(5)).sum()
    torch.testing.assert_close(post.log_prob(torch.zeros(5, dtype=dtype)).double(), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_covariance_is_a_point_mass(dtype: torch.dtype) -> None:
    mean = torch.arange(6, dtype=dtype)
    post = GaussianPosterior(mean, lo.ZeroLinearOperator(6, 6, dtype=torch.float64))
    draws = post.sample((3,), seed=0)
    assert draws.dtype == dtype and torch.equal(draws, mean.expand(3, 6))
    assert torch.equal(post.variance, torch.zeros(6, dtype=dtype))
    batch = GaussianPosterior(
        torch.zeros(2, 3, dtype=dtype),
        lo.ZeroLinearOperator(2, 3, 3, dtype=dtype),
        event_shape=(3,),
    )
    assert torch.equal(batch.sample((4,), seed=0), torch.zeros(4, 2, 3, dtype=dtype))
    with pytest.raises(ValueError, match=r"expected shape \(6, 6\).*received \(6, 5\)"):
        GaussianPosterior(mean, lo.ZeroLinearOperator(6, 5, dtype=dtype))


_F = torch.float64
_A = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=_F)
_S = _A @ _A.T + 6 * torch.eye(6, dtype=_F)
_R = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=_F)
_OPERATORS = {
    "root-added-diag": lambda: lo.LowRankRootAddedDiagLinearOperator(
        lo.LowRankRootLinearOperator(_R), lo.DiagLinearOperator(torch.ones(6, dtype=_F))
    ),
    "sum": lambda: lo.SumLinearOperator(
        lo.DenseLinearOperator(_S), lo.DiagLinearOperator(torch.ones(6, dtype=_F))
    ),
    "block-diag": lambda: lo.BlockDiagLinearOperator(
        lo.DenseLinearOperator(torch.stack([2 * torch.eye(3, dtype=_F), _S[:3, :3]]))
    ),
    "toeplitz": lambda: lo.ToeplitzLinearOperator(
        torch.tensor([2.0, 1.0, 0.5, 0.2, 0.1, 0.0], dtype=_F)
    ),
    "kron-added-diag": lambda: lo.KroneckerProductAddedDiagLinearOperator(
        lo.KroneckerProductLinearOperator(
            lo.DenseLinearOperator(_S[:2, :2]), lo.DenseLinearOperator(_S[:3, :3])
        ),
        lo.ConstantDiagLinearOperator(torch.ones(1, dtype=_F), 6),
    ),
    "matmul": lambda: lo.MatmulLinearOperator(
        lo.DenseLinearOperator(_A), lo.DenseLinearOperator(_A.T.contiguous())
    ),
    "identity-plus-dense": lambda: lo.DenseLinearOperator(_S) + IdentityLinearOperator(6, dtype=_F),
}


@pytest.mark.parametrize("name", sorted(_OPERATORS))
def test_user_operators_give_their_dense_covariance(name: str) -> None:
    op = _OPERATORS[name]()
    dense = op.to_dense()
    post = GaussianPosterior(torch.zeros(6, dtype=_F), op)
    torch.testing.assert_close(post.variance, dense.diagonal())
    draws = post.sample((40000,), seed=0)
    # the empirical covariance of 4e4 draws within 5 % of the largest entry
    err = (torch.cov(draws.T) - dense).abs().max() / dense.abs().max()
    assert float(err) < 0.05
    want = torch.distributions.MultivariateNormal(torch.zeros(6, dtype=_F), dense)
    x = draws[:5]
    torch.testing.assert_close(post.log_prob(x), want.log_prob(x))
