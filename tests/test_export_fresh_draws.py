"""``to_inference_data`` takes the memory of draws made for the export alone (a
GaussianPosterior's, a pick of a SamplePosterior's) instead of copying them once more; stored
draws are still copied, so the export shares memory with nothing of the caller's."""

from __future__ import annotations

import numpy as np
import torch
from linear_operator.operators import DiagLinearOperator

from bayesphys.inference_data import group_dataset
from bayesphys.posterior import GaussianPosterior, SamplePosterior

from .memory_checks import linux_only, peak_rise_mb

F64 = torch.float64


@linux_only
def test_export_of_many_gaussian_draws_holds_no_second_copy():
    # 200 float32 draws of 1e5 points (80 MB): 272 MB at the peak with the copy
    body = (
        "from bayesphys.posterior import GaussianPosterior\n"
        "from linear_operator.operators import DiagLinearOperator\n"
        "p = GaussianPosterior(torch.zeros(100_000), DiagLinearOperator(torch.ones(100_000)))\n"
        "p.to_inference_data(num_samples=200)"
    )
    assert peak_rise_mb(body) < 230


@linux_only
def test_export_of_a_pick_of_stored_draws_holds_no_second_copy():
    body = (
        "from bayesphys.posterior import SamplePosterior\n"
        "SamplePosterior(x, chains=False).to_inference_data(num_samples=150)"
    )
    assert peak_rise_mb(body) < 210  # 233 MB with the copy


def _u(idata) -> np.ndarray:
    return group_dataset(idata, "posterior")["u"].values


def test_exported_draws_are_the_draws_and_share_nothing():
    mean = torch.arange(6, dtype=F64)
    post = GaussianPosterior(mean, DiagLinearOperator(torch.full((6,), 0.5, dtype=F64)))
    idata = post.to_inference_data(num_samples=4, num_chains=2, seed=3)
    want = post.sample((2, 4), generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(_u(idata), want.numpy())
    _u(idata)[...] = -1.0  # an edit of the export leaves the posterior alone
    assert torch.equal(post.mean, torch.arange(6, dtype=F64))
    np.testing.assert_array_equal(
        _u(post.to_inference_data(num_samples=4, num_chains=2, seed=3)), want.numpy()
    )
    draws = torch.randn(2, 5, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    stored = SamplePosterior(draws)
    keep = draws.clone()
    for kwargs in ({}, {"num_samples": 4}, {"num_chains": 2, "num_samples": 3}):
        idata = stored.to_inference_data(seed=1, **kwargs)
        values = _u(idata)
        if not kwargs:
            np.testing.assert_array_equal(values, draws.numpy())
        else:
            flat = draws.reshape(10, 3).numpy()
            assert all(any(np.array_equal(v, f) for f in flat) for v in values.reshape(-1, 3))
        values[...] = 7.0
        assert torch.equal(stored.draws, keep)
