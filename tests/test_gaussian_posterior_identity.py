"""A covariance given as a LinearOperator built without tensors has no device
(``IdentityLinearOperator(n).device is None``): GaussianPosterior read ``.device.type`` of it
and failed with "'NoneType' object has no attribute 'type'". It is put on the mean's device."""

from __future__ import annotations

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
