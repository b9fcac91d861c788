"""Batch, order and chunk invariance of the shared core: a batched posterior gives each member
the numbers it gets alone, and blocked computations (quantiles of draws, sample CRPS) give the
same numbers for any block size and are equivariant under a permutation of the points.

Tolerances: members of a batch compared with the same posterior alone are factorised by the
same LAPACK call per matrix, so they agree to a few float64 ulps (``rtol=1e-12``)."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bayesphys._quantile as quantile_module
import bayesphys.metrics as metrics_module
from bayesphys import GaussianPosterior, SamplePosterior
from bayesphys._linalg import psd_cholesky
from bayesphys.metrics import crps_samples

F64 = torch.float64


def _member(kind: str, n: int, g: torch.Generator) -> torch.Tensor:
    """A float64 covariance ``[n, n]``: positive definite (``"spd"``), exactly singular
    (``"rank1"``, needs the first jitter), or indefinite by ``-5e-7`` of its mean variance
    (``"indefinite"``, needs a jitter of ``1e-6`` of it)."""
    if kind == "spd":
        a = torch.randn(n, n, generator=g, dtype=F64)
        return a @ a.T + n * torch.eye(n, dtype=F64)
    v = torch.randn(n, 1, generator=g, dtype=F64)
    one = v @ v.T + 0.1 * torch.ones(n, n, dtype=F64)
    if kind == "rank1":
        return one if n > 1 else one + 1.0
    return one - 5e-7 * float(one.diagonal().mean()) * torch.eye(n, dtype=F64)


@settings(max_examples=15, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["spd", "rank1", "indefinite"]), min_size=2, max_size=4),
    n=st.integers(2, 6),
    seed=st.integers(0, 10_000),
)
def test_dense_batch_members_match_alone(kinds, n, seed):
    """A batch of dense covariances, some of which need jitter: each member's Cholesky
    factor, draws (common base noise) and log density equal those of the member alone (one
    member's jitter was added to every member of the batch: a positive definite posterior
    batched with a singular one had its variances raised by the other's jitter)."""
    g = torch.Generator().manual_seed(seed)
    covs = torch.stack([_member(k, n, g) for k in kinds])
    mean = torch.randn(len(kinds), n, generator=g, dtype=F64)
    z = torch.randn(3, len(kinds), n, generator=g, dtype=F64)
    x = torch.randn(2, len(kinds), n, generator=g, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the jitter warnings of the singular members
        chol = psd_cholesky(covs)
        batch = GaussianPosterior(mean, covs, event_shape=(n,))
        draws, dens = batch.rsample((3,), base_samples=z), batch.log_prob(x)
        for i in range(len(kinds)):
            alone = GaussianPosterior(mean[i], covs[i])
            torch.testing.assert_close(chol[i], psd_cholesky(covs[i]), rtol=1e-12, atol=0)
            want = alone.rsample((3,), base_samples=z[:, i])
            torch.testing.assert_close(draws[:, i], want, rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(dens[:, i], alone.log_prob(x[:, i]), rtol=1e-12, atol=0)


@pytest.mark.parametrize("block", [1, 7, 60, 2**20])
def test_blocked_quantiles_and_crps_any_block_and_order(monkeypatch, block):
    """Quantiles of draws and the sample CRPS, computed by blocks of points: the same numbers
    for any block size as for the whole at once, and permuting the points permutes them."""
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(2, 30, 4, 9, generator=g, dtype=F64)  # [chain, draw, batch, event]
    y = torch.randn(4, 9, generator=g, dtype=F64)
    perm = torch.randperm(4, generator=g)
    levels = [0.05, 0.5, 0.9]
    want_q = torch.quantile(draws.reshape(60, -1), torch.tensor(levels, dtype=F64), dim=0)
    flat = draws.reshape(60, 4, 9)
    want_c = torch.stack([crps_samples(flat[:, i], y[i]) for i in range(4)])
    monkeypatch.setattr(quantile_module, "_QUANTILE_BLOCK", block)
    monkeypatch.setattr(metrics_module, "_CRPS_BLOCK", block)
    post = SamplePosterior(draws, event_ndim=1)
    q = post.quantile(levels)
    assert torch.equal(q, want_q.reshape(3, 4, 9))
    assert torch.equal(
        SamplePosterior(draws[:, :, perm], event_ndim=1).quantile(levels), q[:, perm]
    )
    per_item = crps_samples(flat, y, dim=1)
    torch.testing.assert_close(per_item, want_c, rtol=1e-13, atol=0)
    torch.testing.assert_close(crps_samples(flat[:, perm], y[perm], dim=1), per_item[perm])
