"""Quantiles of stored draws (``SamplePosterior.quantile`` / ``interval``, the draws branch of
``calibration_curve``) by blocks of points: torch.quantile's numbers exactly, without a sorted
copy of all the draws and its indices at once."""

from __future__ import annotations

import pytest
import torch

import bayesphys._quantile as quantile_module
from bayesphys.metrics import calibration_curve, interval_coverage
from bayesphys.posterior import SamplePosterior

from .memory_checks import linux_only, peak_rise_mb


@linux_only
def test_sample_posterior_interval_of_many_draws_holds_no_sorted_copy():
    # torch.quantile over all the points: a copy of the draws, its sort and indices (~230 MB)
    body = "from bayesphys.posterior import SamplePosterior\nSamplePosterior(x, chains=False)"
    assert peak_rise_mb(body + ".interval(0.9)") < 60


@linux_only
def test_calibration_curve_of_many_draws_holds_no_sorted_copy():
    assert (
        peak_rise_mb(
            "from bayesphys.metrics import calibration_curve\n" + "calibration_curve(x, y)"
        )
        < 60
    )


@pytest.mark.parametrize("block", [2**20, 30, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quantiles_equal_torch_quantile_over_all_points(monkeypatch, block, dtype):
    # 30: 3 points a block of 10 draws
    monkeypatch.setattr(quantile_module, "_QUANTILE_BLOCK", block, raising=False)
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(2, 5, 7, 4, dtype=dtype, generator=g)  # [chain, draw, 7, 4]
    post = SamplePosterior(draws)
    flat = draws.reshape(10, 7, 4)
    q = torch.tensor([[0.05, 0.5], [0.9, 0.975]], dtype=dtype)
    assert torch.equal(
        post.quantile(q), torch.quantile(flat, q.reshape(-1), dim=0).reshape(2, 2, 7, 4)
    )
    assert torch.equal(post.quantile(0.3), torch.quantile(flat, 0.3, dim=0))
    lo, hi = post.interval(0.8)
    assert torch.equal(lo, torch.quantile(flat, (1 - 0.8) / 2, dim=0))
    assert torch.equal(hi, torch.quantile(flat, (1 + 0.8) / 2, dim=0))
    scalar = SamplePosterior(draws[..., 0, 0])  # event (): [chain, draw]
    assert torch.equal(scalar.quantile(0.25), torch.quantile(draws[..., 0, 0].reshape(-1), 0.25))
    # the draws branch of calibration_curve: the coverage of those very quantiles
    y = torch.randn(7, 4, dtype=dtype, generator=g)
    levels = (0.2, 0.6, 0.9)
    nominal, observed = calibration_curve(flat, y, levels)
    want = []
    for lv in levels:
        b = torch.quantile(flat, torch.tensor([(1 - lv) / 2, (1 + lv) / 2], dtype=dtype), dim=0)
        want.append(float(interval_coverage(b[0], b[1], y)))
    assert observed.tolist() == want
    assert nominal.tolist() == list(levels)


def test_calibration_curve_of_draws_of_no_points_names_the_arguments():
    # torch's "quantile() input tensor must be non-empty" (a RuntimeError) before
    with pytest.raises(ValueError, match="expected at least one element"):
        calibration_curve(torch.zeros(5, 0), torch.zeros(0))
