"""Whole-population OT coupling (``coupling="ot_full"``)."""

from __future__ import annotations

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from bayesphys.meta_fm import MetaFlowMatching, couple, full_ot_plans, sample_plan_partners
from bayesphys.problems.populations import PopulationPairs
from tests.tiny_models import SMALL_MFM as SMALL


def test_equal_sizes_give_the_exact_assignment():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(40, 3, generator=gen, dtype=torch.float64) + 0.5
    (plan,) = full_ot_plans([a], [b])
    rows = torch.arange(40)
    got = sample_plan_partners(plan, rows, gen)
    _, col = linear_sum_assignment(torch.cdist(a, b).pow(2).numpy())
    assert got.tolist() == col.tolist()
    # a subsample of rows keeps each row's partner
    sub = torch.tensor([5, 0, 39, 5])
    assert sample_plan_partners(plan, sub, gen).tolist() == col[[5, 0, 39, 5]].tolist()


def test_unequal_sizes_draw_partners_in_proportion_to_the_plan():
    # two source points, four targets: each source point splits its mass 1/2 over two targets
    a = torch.tensor([[0.0], [10.0]], dtype=torch.float64)
    b = torch.tensor([[-1.0], [1.0], [9.0], [11.0]], dtype=torch.float64)
    (plan,) = full_ot_plans([a], [b])
    gen = torch.Generator().manual_seed(1)
    draws = sample_plan_partners(plan, torch.zeros(4000, dtype=torch.long), gen)
    assert set(draws.tolist()) == {0, 1}
    assert abs(float((draws == 0).double().mean()) - 0.5) < 0.05
    draws = sample_plan_partners(plan, torch.ones(4000, dtype=torch.long), gen)
    assert set(draws.tolist()) == {2, 3}
    with pytest.raises(ValueError, match=r"rows: expected source indices in \[0, 2\)"):
        sample_plan_partners(plan, torch.tensor([2]), gen)


def test_permuted_copy_gives_zero_targets_unlike_minibatch_ot():
    # target = the source in shuffled order: the whole-population plan pairs each point with
    # its copy (u = x1 - x0 = 0); minibatch OT between two different subsamples does not
    gen = torch.Generator().manual_seed(2)
    src = [torch.randn(64, 2, generator=gen) for _ in range(3)]
    tgt = [s[torch.randperm(64, generator=gen)] for s in src]
    data = PopulationPairs("copy", src, tgt, torch.arange(3), {"train": [0, 1, 2]}, False)
    full = MetaFlowMatching(data, method="FM", coupling="ot_full", seed=0, **SMALL)
    x0, x1, *_ = full._batch(data, torch.Generator().manual_seed(3), full_ot_plans(src, tgt))
    assert float((x1 - x0).abs().max()) < 1e-6
    mini = MetaFlowMatching(data, method="FM", coupling="ot", seed=0, **SMALL)
    x0, x1, *_ = mini._batch(data, torch.Generator().manual_seed(3))
    x0, x1 = couple(x0, x1, "ot", torch.Generator().manual_seed(4))
    assert float((x1 - x0).abs().max()) > 1e-2


def test_ot_full_model_fits_and_refuses_unknown_couplings():
    gen = torch.Generator().manual_seed(5)
    src = [torch.randn(48, 2, generator=gen) for _ in range(4)]
    tgt = [s.flip(0) * 0.5 + 1.0 for s in src]
    data = PopulationPairs("shift", src, tgt, torch.arange(4), {"train": [0, 1, 2, 3]}, False)
    m = MetaFlowMatching(data, method="MFM", coupling="ot_full", seed=0, **SMALL)
    fit = m.fit(steps=30, progress=False)
    assert fit.steps == 30 and all(torch.isfinite(torch.tensor(fit.loss_history)))
    assert m.coupling == "ot_full"
    with pytest.raises(ValueError, match="coupling: expected .*ot_full"):
        MetaFlowMatching(data, method="FM", coupling="sinkhorn", **SMALL)
    with pytest.raises(ValueError, match="sources/targets"):
        full_ot_plans(src, tgt[:2])
