"""metrics.mmd is a squared distance: never negative, even where round-off would make it so."""

from __future__ import annotations

import torch

from bayesphys.metrics import mmd


def test_mmd_of_a_cloud_and_its_reordering_is_not_negative():
    gen = torch.Generator().manual_seed(0)
    values = []
    for _ in range(60):
        x = torch.randn(50, 2, generator=gen)  # float32: the three kernel means round apart
        values.append(float(mmd(x, x[torch.randperm(50, generator=gen)])))
    assert min(values) >= 0.0
    assert max(values) < 1e-5  # the same cloud: zero up to round-off


def test_mmd_still_separates_distinct_clouds():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 2, generator=gen, dtype=torch.float64)
    assert float(mmd(x, x + 1.0)) > 0.1
