"""Property tests of the exact OT plans against brute force and an independent LP solver."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from bayesphys.meta_fm import full_ot_plans, sample_plan_partners

F64 = torch.float64


def _dense(plan, n: int, m: int) -> torch.Tensor:
    """The ``[n, m]`` plan matrix of a :class:`FullPlan`."""
    ptr, cols, cum = plan
    p = torch.zeros(n, m, dtype=F64)
    rows = torch.repeat_interleave(torch.arange(n), ptr.diff())
    p[rows, cols] = cum.diff()
    return p


def _lp_cost(cost: np.ndarray) -> float:
    """min <P, C> over couplings of the uniform measures, by scipy's HiGHS LP solver."""
    n, m = cost.shape
    a_eq = np.zeros((n + m, n * m))
    for i in range(n):
        a_eq[i, i * m : (i + 1) * m] = 1
    for j in range(m):
        a_eq[n + j, j::m] = 1
    b_eq = np.concatenate([np.full(n, 1 / n), np.full(m, 1 / m)])
    res = linprog(cost.reshape(-1), A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    assert res.status == 0
    return float(res.fun)


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=3),
    d=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_full_ot_plans_are_optimal_couplings(sizes, d, seed):
    """Each plan is a coupling of the uniform measures (row sums 1/n, column sums 1/m) whose
    squared-Euclidean cost is the LP optimum; for n = m it is the best permutation's cost
    (brute force over all n! assignments) and every row has one partner, which
    sample_plan_partners returns."""
    g = torch.Generator().manual_seed(seed)
    src = [torch.randn(n, d, generator=g, dtype=F64) for n, _ in sizes]
    tgt = [torch.randn(m, d, generator=g, dtype=F64) + 0.3 for _, m in sizes]
    plans = full_ot_plans(src, tgt)
    assert len(plans) == len(sizes)
    for plan, a, b in zip(plans, src, tgt):
        n, m = len(a), len(b)
        p = _dense(plan, n, m)
        assert bool((p >= 0).all())
        torch.testing.assert_close(p.sum(1), torch.full((n,), 1 / n, dtype=F64), rtol=0, atol=1e-12)
        torch.testing.assert_close(p.sum(0), torch.full((m,), 1 / m, dtype=F64), rtol=0, atol=1e-12)
        cost = torch.cdist(a, b).pow(2)
        got = float((p * cost).sum())
        assert abs(got - _lp_cost(cost.numpy())) <= 1e-9 * (1 + float(cost.max()))
        if n == m:
            best = min(
                float(cost[torch.arange(n), list(perm)].mean())
                for perm in itertools.permutations(range(n))
            )
            assert abs(got - best) <= 1e-9 * (1 + float(cost.max()))
            if bool((plan.ptr.diff() == 1).all()):  # a unique optimum: a permutation plan
                partners = sample_plan_partners(plan, torch.arange(n), g)
                assert float(cost[torch.arange(n), partners].mean()) == pytest.approx(
                    best, rel=1e-9, abs=1e-12
                )


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 8), d=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_ot_pairing_of_equal_sizes_draws_pairs_of_the_optimal_assignment(n, d, seed):
    """For n = m random points (a unique optimum) every pair ot_pairing draws is a pair of
    scipy's linear_sum_assignment on the squared-Euclidean cost, and the same generator seed
    draws the same pairs; couple(..., "ot") pairs each population the same way."""
    from scipy.optimize import linear_sum_assignment

    from bayesphys.meta_fm import couple, ot_pairing

    g = torch.Generator().manual_seed(seed)
    a = torch.randn(2, n, d, generator=g, dtype=F64)
    b = torch.randn(2, n, d, generator=g, dtype=F64) + 0.5
    p0, p1 = couple(a, b, "ot", torch.Generator().manual_seed(seed))
    for k in range(2):
        _, col = linear_sum_assignment(torch.cdist(a[k], b[k]).pow(2).numpy())
        x0, x1 = ot_pairing(a[k], b[k], torch.Generator().manual_seed(seed))
        y0, y1 = ot_pairing(a[k], b[k], torch.Generator().manual_seed(seed))
        assert torch.equal(x0, y0) and torch.equal(x1, y1)
        assert x0.shape == x1.shape == (n, d)
        for u, v in ((x0, x1), (p0[k], p1[k])):
            i = (u[:, None, :] == a[k][None]).all(-1).int().argmax(1)  # row of each drawn source
            assert torch.equal(u, a[k][i])
            assert torch.equal(v, b[k][torch.as_tensor(col)[i]])


def test_exact_plans_beyond_memory_are_refused_before_any_solve(memory_limit, no_dense_allocation):
    """An exact plan holds dense [n, m] float64 costs and the plan (~49 bytes a pair):
    coupling='ot_full' on two 50k-point populations needs ~120 GB. Every pair is checked
    before the first solve (a large population late in the list failed after the plans of
    all those before it), and minibatch pairing and the population metrics likewise."""
    from bayesphys.meta_fm import ot_pairing
    from bayesphys.meta_fm.evaluation import population_metrics

    g = torch.Generator().manual_seed(0)
    small = [torch.randn(5, 2, generator=g, dtype=torch.float64) for _ in range(2)]
    big = [torch.randn(40, 2, generator=g, dtype=torch.float64) for _ in range(2)]
    memory_limit(4000)  # 5 x 5 pairs pass, 40 x 40 (about 77 kB) do not
    assert len(full_ot_plans([small[0]], [small[1]])) == 1
    no_dense_allocation("ot.emd")
    no_dense_allocation("ot.emd2")
    no_dense_allocation("ot.dist")
    with pytest.raises(
        MemoryError,
        match=r"^sources\[1\]/targets\[1\]: exact optimal transport between 40 and 40 points .* "
        r"more than the 3\.9 KiB of the CPU; use coupling='ot'",
    ):
        full_ot_plans([small[0], big[0]], [small[1], big[1]])
    with pytest.raises(MemoryError, match=r"^x0/x1: .* 40 and 40 points .* coupling='index'"):
        ot_pairing(big[0], big[1])
    with pytest.raises(MemoryError, match=r"^max_points: .* 40 and 40 points"):
        population_metrics(big[0], big[1])  # max_points=None: every point
