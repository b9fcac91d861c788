"""Quantiles of all the entries of a tensor past torch.quantile's size limit (2**24 entries in
the reduced dimension): the variance calibrations of the neural process and ProbConserv take
the quantile of every validation z-score, and refused with torch's "input tensor is too large"
past 16.7 million of them."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bayesphys._quantile as quantile_module
from bayesphys._quantile import quantile_of_all
from bayesphys.neural_process import interval_scale
from bayesphys.probconserv.calibration import coverage_scale


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 200),
    q=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_sorted_path_equals_torch_quantile(n, q, seed, dtype) -> None:
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 3
    want = torch.quantile(x, q)
    with pytest.MonkeyPatch.context() as mp:  # the limit lowered: the sorted path
        mp.setattr(quantile_module, "_TORCH_QUANTILE_MAX", 0)
        got = quantile_of_all(x.reshape(1, n, 1), q)
    assert got.dtype == dtype and got.shape == ()
    # equal up to the rounding of the interpolation, relative to the data's scale (the weight
    # h - floor(h) is formed in the data's dtype by torch, in float64 here)
    tol = (1e-5 if dtype == torch.float32 else 1e-12) * float(x.abs().max())
    torch.testing.assert_close(got, want, rtol=0, atol=tol)


def test_nan_gives_nan_on_both_paths(monkeypatch) -> None:
    x = torch.tensor([1.0, float("nan"), 3.0])
    assert math.isnan(float(quantile_of_all(x, 0.5)))
    monkeypatch.setattr(quantile_module, "_TORCH_QUANTILE_MAX", 0)
    assert math.isnan(float(quantile_of_all(x, 0.5)))


def _large_z(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, generator=g)


def test_interval_scale_past_torch_quantile_limit() -> None:
    n = 2**24 + 5  # torch.quantile refuses this many entries
    err = _large_z(n)
    s = interval_scale(err, torch.ones(n), level=0.9)
    # |N(0, 1)| has 0.9 quantile 1.6449: a scale of 1 up to the sampling error of 1.7e7 draws
    assert abs(s - 1.0) < 2e-3


def test_coverage_scale_past_torch_quantile_limit() -> None:
    z = _large_z(5 * 2**22 + 5).reshape(-1, 5) * 2.0  # z-scores twice too wide: scale 4
    assert abs(coverage_scale(z) - 4.0) < 8e-3
