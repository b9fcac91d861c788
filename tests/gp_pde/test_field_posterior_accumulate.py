"""The Kronecker solvers' field covariance S^T S accumulated block by block in place: the sum of
the blocks' products (to round-off), exactly symmetric, for any block size."""

from __future__ import annotations

import pytest
import torch

from bayesphys.gp_pde.posterior import grid_field_posterior

F64 = torch.float64


@pytest.mark.parametrize("chunk", [1, 7, 40, 512])
def test_field_covariance_is_the_sum_of_the_blocks(chunk):
    k, shape = 40, (5, 6)
    a = torch.randn(k, 30, dtype=F64, generator=torch.Generator().manual_seed(2))

    class Fake:
        root_dim = k

        def sample_u(self, z):
            return (z @ a).reshape(*z.shape[:-1], *shape)

    u = torch.randn(shape, dtype=F64, generator=torch.Generator().manual_seed(3))
    post = grid_field_posterior(u, Fake(), chunk=chunk)
    cov = post.covariance.to_dense()
    want = torch.zeros(30, 30, dtype=F64)
    for i in range(0, k, chunk):
        want = want + a[i : i + chunk].mT @ a[i : i + chunk]
    torch.testing.assert_close(cov, 0.5 * (want + want.mT), rtol=1e-13, atol=1e-13)
    assert torch.equal(cov, cov.mT)
    assert torch.equal(post.mean, u) and post.event_shape == shape
