"""``crps_samples`` works by blocks of points: no float64 copy of all the draws, their sort and
its indices at once (3 GB for 1000 draws of 1e5 points), the same scores to round-off."""

from __future__ import annotations

import pytest
import torch

import bayesphys.metrics as metrics
from bayesphys.metrics import crps_samples

from .memory_checks import linux_only, peak_rise_mb

F64 = torch.float64


@linux_only
def test_crps_samples_of_many_draws_holds_no_float64_copy_of_them():
    # a float64 copy of the draws, its sort and the sort's int64 indices: ~600 MB here
    assert peak_rise_mb("crps_samples(x, y)") < 60


def _crps_old(samples: torch.Tensor, y: torch.Tensor, fair: bool = False) -> torch.Tensor:
    """The former whole-array computation, per point ``[*shape]`` in float64."""
    s = samples.shape[0]
    x = samples.to(F64)
    term1 = (x - y.to(F64)).abs().mean(0)
    xs = x.sort(0).values
    k = torch.arange(1, s + 1, dtype=F64).reshape(-1, *([1] * y.ndim))
    return term1 - (2 * k - s - 1).mul(xs).sum(0) * 2 / (2 * s * (s - 1 if fair else s))


@pytest.mark.parametrize("block", [2**22, 64, 1])
@pytest.mark.parametrize("fair", [False, True])
def test_crps_samples_by_blocks_equals_the_whole_array_result(monkeypatch, block, fair):
    monkeypatch.setattr(
        metrics, "_CRPS_BLOCK", block, raising=False
    )  # 64: 6 points a block of 10 draws
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(10, 7, 5, dtype=F64, generator=g) * 3 + 1e3
    y = torch.randn(7, 5, dtype=F64, generator=g) + 1e3
    want = _crps_old(samples, y, fair)
    torch.testing.assert_close(crps_samples(samples, y, fair=fair), want.mean(), rtol=1e-12, atol=0)
    got = crps_samples(samples, y, dim=1, fair=fair)
    torch.testing.assert_close(got, want.mean(1), rtol=1e-12, atol=0)
    # float32 draws (summed in float64, as before), a strided view, a scalar point
    f32 = samples.float()
    torch.testing.assert_close(
        crps_samples(f32, y.float()), _crps_old(f32, y.float(), fair=False).mean().float()
    )
    view = samples.transpose(1, 2)
    torch.testing.assert_close(
        crps_samples(view, y.mT, fair=fair), want.mT.mean(), rtol=1e-12, atol=0
    )
    torch.testing.assert_close(
        crps_samples(samples[:, 0, 0], y[0, 0]), _crps_old(samples[:, 0, 0], y[0, 0]).mean()
    )
