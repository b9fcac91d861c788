"""``GaussianPosterior`` draws add the mean in place to the new ``L z`` of a built-in root: the
same draws, two arrays of the draws' size at the peak instead of three."""

from __future__ import annotations

import pytest
import torch
from linear_operator.operators import (
    DiagLinearOperator,
    KroneckerProductLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)

from bayesphys import GaussianPosterior
from bayesphys._structured_root import structured_root

from .memory_checks import linux_only, peak_rise_mb

F64 = torch.float64


@linux_only
def test_draws_of_a_large_diagonal_posterior_hold_two_arrays_at_the_peak():
    # 200 float32 draws of 1e5 points: 80 MB each; the noise, L z and mean + L z were 240 MB
    body = (
        "from bayesphys.posterior import GaussianPosterior\n"
        "from linear_operator.operators import DiagLinearOperator\n"
        "p = GaussianPosterior(torch.zeros(100_000), DiagLinearOperator(torch.ones(100_000)))\n"
        "p.sample((200,))"
    )
    assert peak_rise_mb(body) < 200


def _posteriors():
    g = torch.Generator().manual_seed(0)
    n = 12
    a = torch.randn(n, n, dtype=F64, generator=g)
    dense = a @ a.T + n * torch.eye(n, dtype=F64)
    d = torch.rand(n, dtype=F64, generator=g) + 0.5
    r = torch.randn(n, 3, dtype=F64, generator=g)
    f1 = torch.randn(3, 3, dtype=F64, generator=g)
    f2 = torch.randn(4, 4, dtype=F64, generator=g)
    kron = KroneckerProductLinearOperator(f1 @ f1.T + torch.eye(3, dtype=F64), f2 @ f2.T + 1)
    mean = torch.randn(n, dtype=F64, generator=g)
    return {
        "dense": GaussianPosterior(mean, dense),
        "diag": GaussianPosterior(mean, DiagLinearOperator(d)),
        "lowrank": GaussianPosterior(
            mean,
            LowRankRootAddedDiagLinearOperator(LowRankRootLinearOperator(r), DiagLinearOperator(d)),
        ),
        "kron": GaussianPosterior(mean.reshape(3, 4), kron, event_shape=(3, 4)),
        "batch": GaussianPosterior(
            mean.reshape(2, 6), dense[:6, :6].expand(2, 6, 6).clone(), event_shape=(6,)
        ),
    }


@pytest.mark.parametrize("kind", ["dense", "diag", "lowrank", "kron", "batch"])
def test_draws_are_mean_plus_root_times_noise(kind):
    post = _posteriors()[kind]
    root = structured_root(post.covariance)
    z = torch.randn(5, *post.batch_shape, root.base_dim, dtype=F64)
    keep = z.clone()
    got = post.rsample((5,), base_samples=z)
    want = post.mean + root.apply(z).reshape(5, *post.batch_shape, *post.event_shape)
    assert torch.equal(got, want)
    assert torch.equal(z, keep)  # the caller's noise is left alone
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    noise = torch.randn(4, *post.batch_shape, root.base_dim, dtype=F64, generator=g2)
    drawn = post.sample((4,), generator=g1)
    want = post.mean + root.apply(noise).reshape(4, *post.batch_shape, *post.event_shape)
    assert torch.equal(drawn, want)
    assert post.sample((0,)).shape == (0, *post.batch_shape, *post.event_shape)


def test_reparameterised_draws_keep_their_gradients():
    mean = torch.zeros(4, dtype=F64, requires_grad=True)
    log_d = torch.zeros(4, dtype=F64, requires_grad=True)
    post = GaussianPosterior(mean, DiagLinearOperator(log_d.exp()), validate=False)
    z = torch.ones(3, 4, dtype=F64)
    post.rsample((3,), base_samples=z).sum().backward()
    torch.testing.assert_close(mean.grad, torch.full((4,), 3.0, dtype=F64))
    torch.testing.assert_close(log_d.grad, torch.full((4,), 1.5, dtype=F64))  # d(e^{x/2})/dx
