"""Review 76: the calibration diagnostics' docstring equations used as oracles.

Each test computes what a docstring states with naive loops and numpy / scipy, independently
of the code, and compares it with the code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from bayesphys.diagnostics import hdi_pit, sbc_joint_crossfit, sbc_joint_ranks, sbc_uniformity
from bayesphys.diagnostics.record_maps import AffineMap

F64 = torch.float64


def test_chi_square_of_unequal_bins_is_the_stated_statistic():
    """``sbc_uniformity``: rank ``v`` in bin ``floor(v B / (L + 1))``, ``E_b`` = ``N`` times
    the share of rank values in bin ``b``, :math:`X^2 = \\sum_b (O_b - E_b)^2 / E_b` on
    ``B - 1`` degrees of freedom, ``B = min(20, N // 5, L + 1)``, Bonferroni over ``K``; here
    with bins of unequal numbers of rank values (``L + 1 = 7`` values in ``B = 5`` bins)."""
    n, n_draws, k = 25, 6, 2
    ranks = torch.randint(0, n_draws + 1, (n, k), generator=torch.Generator().manual_seed(3))
    out = sbc_uniformity(ranks, n_draws)
    b = min(20, n // 5, n_draws + 1)
    assert out["n_bins"] == b == 5
    share = [sum(1 for v in range(n_draws + 1) if v * b // (n_draws + 1) == j) for j in range(b)]
    assert share == [2, 1, 2, 1, 1]  # unequal bins
    chi2, pvals = [], []
    for col in range(k):
        observed = [0] * b
        for v in ranks[:, col].tolist():
            observed[v * b // (n_draws + 1)] += 1
        expected = [n * s / (n_draws + 1) for s in share]
        x2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
        chi2.append(x2)
        pvals.append(stats.chi2.sf(x2, b - 1))
    np.testing.assert_allclose(out["chi2"], chi2, rtol=1e-12)
    np.testing.assert_allclose(out["chi2_pvalue"], pvals, rtol=1e-10)
    assert out["pvalue"] == pytest.approx(min(1.0, k * min(pvals)), rel=1e-10)


def test_two_problems_can_reject_at_5_percent_when_the_bins_are_unequal():
    """The docstring said the chi-square "cannot reject at 5 % below N = 4"; that holds for
    bins of equally many rank values only. ``N = 2`` ranks of value 2 at ``L = 2`` (bins of 2
    and 1 rank values, expected counts 4/3 and 2/3) give :math:`X^2 = 4`, ``p = 0.046``; with
    equal bins (``L = 3``) the most extreme three ranks give ``p = 0.083``."""
    out = sbc_uniformity(torch.tensor([[2], [2]]), 2)
    assert out["chi2"][0] == pytest.approx(4.0, rel=1e-12)
    assert out["chi2_pvalue"][0] == pytest.approx(stats.chi2.sf(4.0, 1), rel=1e-10)
    assert out["chi2_pvalue"][0] < 0.05
    equal = sbc_uniformity(torch.tensor([[3], [3], [3]]), 3)
    assert equal["chi2"][0] == pytest.approx(3.0) and equal["chi2_pvalue"][0] > 0.05


def _pools(n, n_draws, k, seed):
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(k, k, generator=gen, dtype=F64)
    truth = torch.randn(n, k, generator=gen, dtype=F64) @ mix
    draws = torch.randn(n, n_draws, k, generator=gen, dtype=F64) @ (0.7 * mix)
    return truth, draws


@pytest.mark.parametrize("k", [1, 2, 3])
def test_joint_ranks_are_ranks_of_the_pooled_mahalanobis_distance(k):
    """``sbc_joint_ranks``: :math:`d(x) = (x - m_i)^\\top S_i^+ (x - m_i)` with the pool's mean
    and covariance :math:`S_i = \\frac1n \\sum (x - m_i)(x - m_i)^\\top`, and
    :math:`r_i = \\#\\{j : d(\\theta_{ij}) < d(\\theta_i)\\}` (continuous draws: no ties)."""
    truth, draws = _pools(20, 9, k, seed=k)
    got = sbc_joint_ranks(truth, draws, seed=0)
    want = []
    for i in range(truth.shape[0]):
        pool = np.concatenate([truth[i, None].numpy(), draws[i].numpy()])
        c = pool - pool.mean(0)
        s = c.T @ c / len(pool)
        d = np.einsum("nk,kl,nl->n", c, np.linalg.pinv(s), c)
        want.append(int((d[1:] < d[0]).sum()))
    assert got.tolist() == want


def _inv_sqrt(a):
    e, v = np.linalg.eigh(a)
    return v @ np.diag(e**-0.5) @ v.T


def test_crossfit_statistic_and_fitted_matrices_follow_the_four_steps():
    """``sbc_joint_crossfit``, steps 1-3 written out: the common frame
    :math:`z = G^{-1/2} x`, :math:`G` the mean pool covariance; the per-pool whitening
    :math:`w = T_i^{-1/2}(z - \\bar z_i)`; :math:`M_A` the mean of the truths' :math:`w w^\\top`
    on half ``A`` (eigenvalues floored at ``1/n``), and the other half's ranks of
    :math:`s(w) = w^\\top (I - M_A^{-1}) w` among the pool; ``m`` is ``[M_A, M_B]``."""
    truth, draws = _pools(14, 11, 3, seed=7)
    out = sbc_joint_crossfit(truth, draws, seed=0)
    pool = np.concatenate([truth.numpy()[:, None], draws.numpy()], 1)  # [N, n, K]
    n = pool.shape[1]
    x = pool - pool.mean(1, keepdims=True)
    g = np.mean([xi.T @ xi / n for xi in x], 0)
    z = x @ _inv_sqrt(g)
    w = np.stack([zi @ _inv_sqrt(zi.T @ zi / n) for zi in z])
    half = out["half"].numpy()
    ranks = np.zeros(len(pool), dtype=int)
    for h in (0, 1):
        w0 = w[half == h, 0]
        m = w0.T @ w0 / len(w0)
        np.testing.assert_allclose(out["m"][h].numpy(), m, rtol=1e-9, atol=1e-12)
        e, v = np.linalg.eigh(m)
        q = np.eye(3) - v @ np.diag(1 / np.maximum(e, 1 / n)) @ v.T
        for i in np.nonzero(half != h)[0]:
            s = np.einsum("nk,kl,nl->n", w[i], q, w[i])
            ranks[i] = int((s[1:] < s[0]).sum())
    assert out["ranks"].tolist() == ranks.tolist()
    assert sorted(np.bincount(half).tolist()) == [7, 7]


def test_hdi_depth_is_the_first_shortest_run_that_contains_the_value():
    """``hdi_pit``: pool the truth with its ``L`` draws; for ``m = 2..n`` the first shortest run
    of ``m`` sorted pooled values, each value's depth the first ``m`` whose run contains it
    (ends inside), and :math:`u (L + 1) \\in [\\#\\{e_j < e_0\\}, \\#\\{e_j < e_0\\} +
    \\#\\{e_j = e_0\\} + 1)` whatever ``V``."""
    gen = torch.Generator().manual_seed(11)
    n_sims, n_draws, k = 6, 8, 2
    truth = torch.randn(n_sims, k, generator=gen, dtype=F64)
    draws = (torch.randn(n_sims, n_draws, k, generator=gen, dtype=F64) * 10).round() / 10  # ties
    u = hdi_pit(truth, draws, seed=0)
    assert u.shape == (n_sims, k) and u.dtype == F64
    n = n_draws + 1
    for i in range(n_sims):
        for c in range(k):
            pool = [float(truth[i, c])] + draws[i, :, c].tolist()
            s = sorted(pool)
            depth = [n] * n
            for m in range(2, n + 1):
                widths = [s[a + m - 1] - s[a] for a in range(n - m + 1)]
                j = widths.index(min(widths))
                for p, val in enumerate(pool):
                    if depth[p] == n and s[j] <= val <= s[j + m - 1]:
                        depth[p] = m
            less = sum(e < depth[0] for e in depth[1:])
            ties = sum(e == depth[0] for e in depth[1:])
            scaled = float(u[i, c]) * n
            assert less - 1e-9 <= scaled <= less + ties + 1 + 1e-9, (i, c, depth, scaled)


def test_affine_map_is_the_stated_shift_and_scale():
    """``AffineMap``: :math:`x' = \\bar x + b\\,\\mathrm{sd}(x) + s(x - \\bar x)`,
    :math:`b = \\sum_i (t_i - \\bar x_i)/\\sum_i \\mathrm{sd}(x_i)`, :math:`s = \\mathrm{sd}(z)`
    of :math:`z = (t - \\bar x)/(c_L \\mathrm{sd}(x))`,
    :math:`c_L = \\sqrt{(L+1)(L-1)/(L(L-3))}` (sample sds, ``ddof = 1``)."""
    gen = torch.Generator().manual_seed(5)
    n, n_draws = 30, 7
    draws = 2 + 0.5 * torch.randn(n, n_draws, generator=gen, dtype=F64)
    truth = 2.3 + torch.randn(n, generator=gen, dtype=F64)
    fitted = AffineMap.fit(draws, truth)
    d, t = draws.numpy(), truth.numpy()
    mean, sd = d.mean(1), d.std(1, ddof=1)
    c_l = math.sqrt((n_draws + 1) * (n_draws - 1) / (n_draws * (n_draws - 3)))
    z = (t - mean) / sd / c_l
    assert fitted.shift == pytest.approx((t - mean).sum() / sd.sum(), rel=1e-12)
    assert fitted.scale == pytest.approx(z.std(ddof=1), rel=1e-12)
    x = draws[0]
    want = mean[0] + fitted.shift * sd[0] + fitted.scale * (x.numpy() - mean[0])
    np.testing.assert_allclose(fitted.map(x).numpy(), want, rtol=1e-12)


def test_score_summary_is_the_empirical_crps_and_the_nll_of_the_ddof_1_gaussian():
    """``score_summary``: the CRPS of the draws' empirical law,
    :math:`\\frac1L\\sum_j|x_j - t| - \\frac1{2L^2}\\sum_{jl}|x_j - x_l|` (not the fair one),
    and the NLL of :math:`N(\\bar x, \\mathrm{sd}^2)` with the sample variance (divisor
    ``L - 1``), both averaged over ``[N, K]``. The convention was not stated ("moment-matched");
    a divisor ``L`` moves the NLL by about 0.1 here."""
    from bayesphys.diagnostics import score_summary

    gen = torch.Generator().manual_seed(2)
    truth = torch.randn(5, 2, generator=gen, dtype=F64)
    draws = torch.randn(5, 4, 2, generator=gen, dtype=F64)
    out = score_summary(truth, draws)
    t, d = truth.numpy(), draws.numpy()
    crps = np.mean(
        [
            np.abs(d[i, :, k] - t[i, k]).mean()
            - np.abs(d[i, :, k, None] - d[i, None, :, k]).sum() / (2 * 4**2)
            for i in range(5)
            for k in range(2)
        ]
    )
    nll = -stats.norm(d.mean(1), d.std(1, ddof=1)).logpdf(t).mean()
    assert out["crps"] == pytest.approx(crps, rel=1e-12)
    assert out["nll"] == pytest.approx(nll, rel=1e-12)
    assert abs(nll + stats.norm(d.mean(1), d.std(1, ddof=0)).logpdf(t).mean()) > 0.05


def test_quantile_map_grid_spans_seven_sds_in_float64_and_five_in_float32():
    """The quantile recalibration's grid: ``n_grid`` probabilities :math:`\\Phi(z)`, ``z``
    equispaced in :math:`[-7, 7]`, and :math:`[-5, 5]` for a float32 posterior (the module
    docstring gave only the float64 span)."""
    from bayesphys.diagnostics import Recalibrator

    rec = Recalibrator("quantile", pits=torch.tensor([0.2, 0.5, 0.7]), n_grid=11)
    for dtype, zmax in ((F64, 7.0), (torch.float32, 5.0)):
        grid = rec._grid(torch.zeros(1, dtype=dtype))
        want = stats.norm.cdf(np.linspace(-zmax, zmax, 11))
        assert grid.dtype == dtype and grid.shape == (11,)
        # torch's ndtr is accurate to about the dtype's eps absolute in the far tail
        eps = torch.finfo(dtype).eps
        np.testing.assert_allclose(grid.double().numpy(), want, rtol=10 * eps, atol=eps)
