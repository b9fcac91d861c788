"""The joint (pooled Mahalanobis) SBC rank of the summary vector: exact under the null, power
against a wrong dependence between summaries, affine invariance, K = 1, input checks."""

from __future__ import annotations

import pytest
import torch

from bayesphys.diagnostics import (
    SimulationRecord,
    analyse,
    is_calibrated,
    sbc_joint_ranks,
    sbc_ranks,
    sbc_uniformity,
)


def _gauss_case(n, n_draws, g, *, rho=0.9, draws="exact", width=1.0):
    """theta ~ N(0, P) (K = 2, prior correlation ``rho``), x = theta + N(0, I), exact posterior
    N(C x, C) with C = (P^-1 + I)^-1 (correlation 0.76 at rho = 0.9). ``draws``: "exact",
    "decorrelated" (the exact marginals, independent coordinates) or "flipped" (the
    correlation's sign reversed); ``width`` scales the draws about the posterior mean."""
    prior = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    theta = torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(prior).T
    x = theta + torch.randn(n, 2, generator=g, dtype=torch.float64)
    cov = torch.linalg.inv(torch.linalg.inv(prior) + torch.eye(2, dtype=torch.float64))
    if draws == "decorrelated":
        cov = cov.diagonal().diag()
    elif draws == "flipped":
        cov = cov * torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    mean = x @ torch.linalg.inv(torch.linalg.inv(prior) + torch.eye(2, dtype=torch.float64)).T
    eps = torch.randn(n, n_draws, 2, generator=g, dtype=torch.float64)
    d = mean[:, None, :] + width * eps @ torch.linalg.cholesky(cov).T
    return theta, d


def _exchangeable_pool(n, n_draws, k, g):
    """Truth and draws i.i.d. from a skewed, correlated law that differs per problem, with
    one discrete summary (ties): the truth is exchangeable with its draws."""
    z = torch.randn(n, 1 + n_draws, k, generator=g, dtype=torch.float64)
    mix = torch.randn(n, k, k, generator=g, dtype=torch.float64)
    pool = (z @ mix).exp() + torch.randn(n, 1, k, generator=g, dtype=torch.float64)
    pool[..., 0] = (pool[..., 0] > pool[..., 0].median()).double() * 3  # two values: ties
    return pool[:, 0], pool[:, 1:]


def test_ranks_are_uniform_and_the_tests_hold_their_level_for_an_exchangeable_truth():
    """Over 300 runs (N = 100, L = 19, K = 3, a skewed correlated law with a binary summary)
    the chi-square and KS p-values of the joint ranks reject at 1 % at about their level, and
    the 30 000 ranks pooled are uniform on 0..19."""
    g = torch.Generator().manual_seed(0)
    reps, rej_chi2, rej_ks, all_ranks = 300, 0, 0, []
    for r in range(reps):
        truth, draws = _exchangeable_pool(100, 19, 3, g)
        ranks = sbc_joint_ranks(truth, draws, seed=r)
        assert ranks.shape == (100,) and ranks.dtype == torch.long
        u = sbc_uniformity(ranks, 19, seed=r)
        rej_chi2 += u["pvalue"] < 0.01
        rej_ks += u["pvalue_ks"] < 0.01
        all_ranks.append(ranks)
    sd = (0.01 * 0.99 / reps) ** 0.5
    assert rej_chi2 / reps <= 0.01 + 3 * sd and rej_ks / reps <= 0.01 + 3 * sd
    pooled = sbc_uniformity(torch.cat(all_ranks), 19)
    assert pooled["pvalue"] > 1e-3 and pooled["pvalue_ks"] > 1e-3


def test_a_singular_pool_gives_uniform_ranks():
    """K >= L (every leverage equals (n - 1)/n: all tie) and a constant summary (dropped by
    the pseudo-inverse) keep the ranks exactly uniform."""
    g = torch.Generator().manual_seed(1)
    truth, draws = torch.randn(3000, 6, generator=g), torch.randn(3000, 4, 6, generator=g)
    assert sbc_uniformity(sbc_joint_ranks(truth, draws), 4)["pvalue"] > 1e-3
    truth = torch.randn(3000, 2, generator=g, dtype=torch.float64)
    draws = torch.randn(3000, 9, 2, generator=g, dtype=torch.float64)
    truth[:, 1], draws[..., 1] = 2.0, 2.0
    ranks = sbc_joint_ranks(truth, draws, seed=1)
    assert sbc_uniformity(ranks, 9)["pvalue"] > 1e-3
    # and the constant summary is ignored: the ranks are those of the first summary alone
    assert torch.equal(ranks, sbc_joint_ranks(truth[:, :1], draws[..., :1], seed=1))
    # every point equal: all tie, uniform
    flat = sbc_joint_ranks(torch.ones(4000, 2), torch.ones(4000, 3, 2), seed=2)
    assert (torch.bincount(flat, minlength=4).double() / 4000 - 0.25).abs().max() < 0.03


def test_the_joint_rank_sees_a_wrong_dependence_that_the_marginal_ranks_cannot():
    """Draws with the exact marginals: the marginal SBC ranks are exactly uniform. The joint
    rank rejects a flipped correlation (0.76 -> -0.76) at N = 200, L = 99 at once; ignoring the
    correlation (draws independent) leaves the mean distance at K and changes only its spread,
    so at N = 200 it is rejected in a fraction of runs (about 0.2 chi-square, 0.3 KS at 1 %), and
    clearly at N = 2000 (p below 1e-8 in 40 of 40 seeded runs, median 5e-15)."""
    g = torch.Generator().manual_seed(2)
    truth, draws = _gauss_case(200, 99, g, draws="flipped")
    assert sbc_uniformity(sbc_joint_ranks(truth, draws), 99)["pvalue"] < 1e-10
    assert sbc_uniformity(sbc_ranks(truth, draws), 99)["pvalue"] > 1e-3  # marginals exact
    truth, draws = _gauss_case(200, 99, g, width=0.7)  # 0.7 x too narrow
    assert sbc_uniformity(sbc_joint_ranks(truth, draws), 99)["pvalue"] < 1e-6

    reps, rej_joint, rej_ks, rej_marg = 100, 0, 0, 0
    for r in range(reps):
        truth, draws = _gauss_case(200, 99, g, draws="decorrelated")
        u = sbc_uniformity(sbc_joint_ranks(truth, draws, seed=r), 99, seed=r)
        rej_joint += u["pvalue"] < 0.01
        rej_ks += u["pvalue_ks"] < 0.01
        rej_marg += sbc_uniformity(sbc_ranks(truth, draws, seed=r), 99)["pvalue"] < 0.01
    assert rej_joint >= 10 and rej_ks >= 15 and rej_marg <= 5

    truth, draws = _gauss_case(2000, 99, g, draws="decorrelated")
    res = analyse(SimulationRecord(names=["a", "b"], truth=truth, draws=draws))
    m = res.metrics()
    assert m["sbc_pvalue_joint"] < 1e-5 and m["sbc_pvalue_joint_ks"] < 1e-5
    assert m["sbc_pvalue"] > 0.01 and is_calibrated(m)  # is_calibrated's rule is unchanged


def test_ranks_are_invariant_to_an_affine_map_and_to_the_order_of_the_draws():
    g = torch.Generator().manual_seed(3)
    truth, draws = _exchangeable_pool(200, 29, 4, g)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64) + 3 * torch.eye(4, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64) * 10
    ranks = sbc_joint_ranks(truth, draws, seed=5)
    assert torch.equal(sbc_joint_ranks(truth @ a.T + b, draws @ a.T + b, seed=5), ranks)
    scale = torch.tensor([1e-6, 1.0, 1e4, -3.0], dtype=torch.float64)  # units, a sign
    assert torch.equal(sbc_joint_ranks(truth * scale, draws * scale, seed=5), ranks)
    perm = torch.randperm(29, generator=g)
    assert torch.equal(sbc_joint_ranks(truth, draws[:, perm], seed=5), ranks)


def test_the_distance_is_the_pooled_mahalanobis_distance():
    """Against (x - m)^T S^-1 (x - m) of the pool computed directly, without ties."""
    g = torch.Generator().manual_seed(4)
    truth = torch.randn(50, 3, generator=g, dtype=torch.float64)
    draws = torch.randn(50, 19, 3, generator=g, dtype=torch.float64) * 2 + 0.3
    pool = torch.cat([truth[:, None], draws], 1)
    x = pool - pool.mean(1, keepdim=True)
    s_inv = torch.linalg.inv(x.transpose(1, 2) @ x / 20)
    d = torch.einsum("inj,ijk,ink->in", x, s_inv, x)
    expected = (d[:, 1:] < d[:, :1]).sum(1)
    assert torch.equal(sbc_joint_ranks(truth, draws), expected)


def test_one_summary_gives_the_two_sided_rank_of_the_distance_to_the_pool_mean():
    g = torch.Generator().manual_seed(5)
    truth = torch.randn(300, 1, generator=g, dtype=torch.float64)
    draws = torch.randn(300, 49, 1, generator=g, dtype=torch.float64) + 0.5
    m = torch.cat([truth[:, None], draws], 1).mean(1)  # [N, 1]
    expected = ((draws - m[:, None]).abs() < (truth - m).abs()[:, None]).sum(1)[:, 0]
    assert torch.equal(sbc_joint_ranks(truth, draws), expected)


def test_analyse_adds_the_joint_pvalues_only_for_several_summaries():
    g = torch.Generator().manual_seed(6)
    truth, draws = _gauss_case(100, 49, g)
    res = analyse(SimulationRecord(names=["a", "b"], truth=truth, draws=draws), seed=3)
    ranks = sbc_joint_ranks(truth, draws, seed=3)
    assert torch.equal(res.joint["ranks"], ranks)
    u = sbc_uniformity(ranks, 49, seed=3)
    m = res.metrics()
    assert m["sbc_pvalue_joint"] == u["pvalue"] and m["sbc_pvalue_joint_ks"] == u["pvalue_ks"]
    one = analyse(SimulationRecord(names=["a"], truth=truth[:, :1], draws=draws[..., :1]))
    assert one.joint is None
    assert one.metrics()["sbc_pvalue_joint"] is None
    assert one.metrics()["sbc_pvalue_joint_ks"] is None


def test_bad_input_is_refused():
    t, d = torch.zeros(4, 2), torch.zeros(4, 5, 2)
    with pytest.raises(TypeError, match="truth"):
        sbc_joint_ranks(t.numpy(), d)
    with pytest.raises(ValueError, match="truth/draws"):
        sbc_joint_ranks(torch.zeros(4), d)
    with pytest.raises(ValueError, match="K = 2"):
        sbc_joint_ranks(t, torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match="N >= 1"):
        sbc_joint_ranks(t, torch.zeros(4, 0, 2))
    bad = d.clone()
    bad[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="draws"):
        sbc_joint_ranks(t, bad)
    with pytest.raises((TypeError, ValueError), match="seed"):
        sbc_joint_ranks(t, d, seed=-1.5)
    # integer and bool summaries are taken as float64
    assert sbc_joint_ranks(t.long(), d.long()).shape == (4,)
    assert sbc_joint_ranks(t.bool(), d.bool()).shape == (4,)
