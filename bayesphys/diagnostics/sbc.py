r"""Simulation-based calibration (Talts et al. 2018) with PIT-ECDF bands (Säilynoja et al. 2022).

If :math:`\theta_i \sim p(\theta)`, :math:`y_i \sim p(y\mid\theta_i)` and the draws
:math:`\theta_{i1..iL}` come from the exact posterior :math:`p(\theta\mid y_i)`, then for every
scalar summary :math:`s` the rank

.. math:: r_i = \#\{j : s(\theta_{ij}) < s(\theta_i)\} \in \{0, \dots, L\}

is discrete-uniform on :math:`\{0..L\}`. Ties (discrete summaries, repeated draws) are broken
uniformly at random. Tests of that uniformity:

* **chi-square** on ``B = min(20, N/5, L+1)`` bins of the ranks (rank ``v`` in bin
  :math:`\lfloor vB/(L+1)\rfloor`): :math:`X^2 = \sum_b (O_b - E_b)^2 / E_b` on ``B - 1``
  degrees of freedom, :math:`E_b` = ``N`` times the share of rank values in bin ``b``;
* **KS** on the randomised PIT :math:`u_i = (r_i + V_i)/(L+1)`, :math:`V_i \sim U(0, 1)`,
  which is exactly :math:`U(0,1)` under calibration.

Several summaries are combined with a Bonferroni correction:
:math:`p = \min(1, K \min_k p_k)`.

Joint tests of the summary vector: :func:`sbc_joint_ranks` (the pooled Mahalanobis rank, a
fixed statistic) and :func:`sbc_joint_crossfit` (a Gaussian likelihood-ratio statistic learned
on one half of the problems and ranked on the other, and the reverse).

The PIT-ECDF plot shows :math:`\hat F(z) - z` at :math:`z_m = m/(L+1)`, where
:math:`\hat F(z_m) = \#\{i : r_i < m\}/N`, inside a simultaneous ``prob`` band: a band that a
uniform ECDF leaves with probability ``1 - prob`` *anywhere*. ArviZ 0.x's
``ecdf_confidence_band(method="optimized")`` computes it; elsewhere (ArviZ >= 1) we simulate
uniform ECDFs and tune the pointwise binomial level ourselves (same construction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from .._checks import check_int, check_seed, offset_seed
from .._device import check_finite
from .._plotting import line_colour

if TYPE_CHECKING:  # pragma: no cover
    import arviz
    import matplotlib.axes
    import xarray as xr

__all__ = [
    "sbc_ranks",
    "sbc_joint_ranks",
    "sbc_joint_crossfit",
    "sbc_pit",
    "sbc_uniformity",
    "ecdf_band",
    "pit_ecdf",
    "ranks_inference_data",
    "plot_pit_ecdf",
]


def check_truth_draws(truth: Tensor, draws: Tensor) -> None:
    """Shared input check of the rank and coverage diagnostics: ``truth [N, K]`` and
    ``draws [N, L, K]`` of the same ``N`` and ``K``, all finite (a NaN compares neither below
    nor equal to anything: it would silently count as a draw above the truth, or give a NaN
    truth rank 0)."""
    for name, t in (("truth", truth), ("draws", draws)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, received {type(t).__name__}")
    if truth.ndim != 2 or draws.ndim != 3 or draws.shape[0] != truth.shape[0]:
        raise ValueError(
            f"truth/draws: expected [N, K] and [N, L, K], received {tuple(truth.shape)} and "
            f"{tuple(draws.shape)}"
        )
    if draws.shape[2] != truth.shape[1]:
        raise ValueError(
            f"draws: expected K = {truth.shape[1]} summaries in the last dim, received "
            f"{tuple(draws.shape)}"
        )
    if truth.shape[0] == 0 or truth.shape[1] == 0 or draws.shape[1] == 0:
        raise ValueError(
            f"truth/draws: expected N >= 1 problems, L >= 1 draws and K >= 1 summaries, "
            f"received truth {tuple(truth.shape)} and draws {tuple(draws.shape)}"
        )
    check_finite("truth", truth)
    check_finite("draws", draws)


def check_ranks(ranks: Tensor, n_draws: int) -> Tensor:
    """Shared input check of the rank diagnostics: ``ranks [N, K]`` (or ``[N]``), integers
    (integral floats accepted) in ``0..n_draws``, ``N, K >= 1``. Returns them ``[N, K]``."""
    if not isinstance(ranks, Tensor):
        raise TypeError(f"ranks: expected a torch.Tensor, received {type(ranks).__name__}")
    if ranks.ndim == 1:
        ranks = ranks[:, None]
    if ranks.ndim != 2 or ranks.numel() == 0:
        raise ValueError(
            f"ranks: expected [N, K] with N, K >= 1, received shape {tuple(ranks.shape)}"
        )
    if ranks.is_floating_point():
        if not bool((ranks == ranks.round()).all()):
            raise ValueError("ranks: expected integer values in 0..L, received non-integers")
    elif ranks.is_complex() or ranks.dtype == torch.bool:
        raise TypeError(f"ranks: expected integer values in 0..L, received dtype {ranks.dtype}")
    if float(ranks.min()) < 0 or float(ranks.max()) > n_draws:
        raise ValueError(f"ranks: expected values in 0..{n_draws}, received out-of-range ranks")
    return ranks


def sbc_ranks(truth: Tensor, draws: Tensor, *, seed: int = 0) -> Tensor:
    """Ranks ``[N, K]`` (ints in ``0..L``) of ``truth [N, K]`` among ``draws [N, L, K]``.

    Ties are broken uniformly at random (seeded), so discrete summaries stay uniform.
    """
    check_truth_draws(truth, draws)
    seed = check_seed("seed", seed)
    t = truth[:, None, :]
    less = (draws < t).sum(1)
    ties = (draws == t).sum(1)
    gen = torch.Generator().manual_seed(int(seed))
    u = torch.rand(ties.shape, generator=gen, dtype=torch.float64).to(ties.device)
    extra = torch.floor(u * (ties + 1).double()).long()
    return (less + extra).long()


def sbc_joint_ranks(truth: Tensor, draws: Tensor, *, seed: int = 0) -> Tensor:
    r"""Pooled Mahalanobis ranks ``[N]`` (ints in ``0..L``) of the summary vectors
    ``truth [N, K]`` among ``draws [N, L, K]``: a joint SBC rank.

    Each problem's truth is pooled with its draws, :math:`P_i = \{\theta_i, \theta_{i1}, \dots,
    \theta_{iL}\}` (``n = L + 1`` vectors); with the pool's mean :math:`m_i` and covariance
    :math:`S_i = \frac1n \sum_{x \in P_i} (x - m_i)(x - m_i)^\top` every pool member gets the
    distance

    .. math:: d(x) = (x - m_i)^\top S_i^{+} (x - m_i) = n\, h(x),

    :math:`S_i^{+}` the pseudo-inverse and :math:`h(x)` the leverage of :math:`x` in the centred
    pool (the diagonal of the projection onto the column space of the centred ``[n, K]`` pool
    matrix), and the rank is :math:`r_i = \#\{j : d(\theta_{ij}) < d(\theta_i)\}`, ties broken
    uniformly at random (seeded) as in :func:`sbc_ranks`. ``d`` is a symmetric function of the
    pool, so a truth exchangeable with its draws (an exact posterior) has ranks exactly uniform
    on ``0..L`` whatever the posterior's shape. Large ranks: the truth is far out in the metric of
    the pool (draws too narrow, or a dependence between summaries they do not have); small ranks:
    draws too wide. Read them with :func:`sbc_uniformity` (``[N]`` is one summary).

    ``d`` is invariant under any invertible affine map :math:`\theta \mapsto A\theta + b` of
    the summaries (the column space does not change), and for ``K = 1`` it is
    :math:`((x - m_i)/s_i)^2`: the rank of :math:`|\theta_i - m_i|` among the
    :math:`|\theta_{ij} - m_i|`, a two-sided rank that sees width, not the sign of a bias. A
    singular :math:`S_i` (a constant summary, ``K >= L`` or repeated draws) is handled by the
    pseudo-inverse (singular values of the centred pool below ``max(n, K)`` float64 eps times the
    largest are dropped); the leverages are rounded to ``1e-9`` before ranking, so values equal in
    exact arithmetic tie (for ``K >= L`` with distinct points every leverage is
    :math:`(n-1)/n`: all tie and the rank is uniform, with no power). Coordinates are scaled by
    the pool's standard deviation first (again a symmetric function of the pool). The
    log-density of a Gaussian fitted to the pool, :math:`-d/2` + const, gives the same ranks
    (reversed). Computed in float64; integer or bool summaries are taken as float64.
    """
    check_truth_draws(truth, draws)
    seed = check_seed("seed", seed)
    pool = torch.cat([truth[:, None, :], draws], 1).double()  # [N, n, K], the truth first
    n = pool.shape[1]
    x = pool - pool.mean(1, keepdim=True)
    sd = x.square().mean(1, keepdim=True).sqrt()
    x = torch.where(sd > 0, x / torch.where(sd > 0, sd, torch.ones_like(sd)), torch.zeros_like(x))
    u, s, _ = torch.linalg.svd(x, full_matrices=False)  # u [N, n, r], s [N, r]
    tol = max(n, x.shape[2]) * torch.finfo(torch.float64).eps * s[:, :1]
    keep = (s > tol) & (s[:, :1] > 0)  # [N, r]
    lev = (u.square() * keep[:, None, :]).sum(2)  # [N, n], the leverages h in [0, 1]
    lev = torch.round(lev * 1e9)
    d_true, d_draw = lev[:, :1], lev[:, 1:]
    less = (d_draw < d_true).sum(1)
    ties = (d_draw == d_true).sum(1)
    gen = torch.Generator().manual_seed(offset_seed(seed, 3))
    v = torch.rand(ties.shape, generator=gen, dtype=torch.float64).to(ties.device)
    return (less + torch.floor(v * (ties + 1).double()).long()).long()


def _inv_sqrt_psd(s: Tensor, n: int) -> Tensor:
    """Symmetric pseudo-inverse square roots ``[..., K, K]`` of PSD matrices ``s [..., K, K]``:
    eigenvalues below ``max(n, K)`` float64 eps times the largest are dropped (weight 0)."""
    e, v = torch.linalg.eigh(s)
    tol = max(n, s.shape[-1]) * torch.finfo(torch.float64).eps * e[..., -1:].clamp_min(0)
    keep = (e > tol) & (e[..., -1:] > 0)
    r = torch.where(keep, e.clamp_min(torch.finfo(torch.float64).tiny).rsqrt(), 0.0)
    return v @ torch.diag_embed(r) @ v.transpose(-1, -2)


def sbc_joint_crossfit(truth: Tensor, draws: Tensor, *, seed: int = 0) -> dict:
    r"""Cross-fitted joint SBC test of the summary vectors ``truth [N, K]`` among
    ``draws [N, L, K]``: a statistic learned on half of the problems ranks the other half.

    1. **Common frame.** :math:`G = \frac1N \sum_i S_i`, the mean of the pool covariances
       (pool :math:`P_i = \{\theta_i, \theta_{i1}, \dots, \theta_{iL}\}`, ``n = L + 1``
       vectors, mean :math:`m_i`, :math:`S_i = \frac1n \sum_{x \in P_i} (x - m_i)(x -
       m_i)^\top`), and every vector is mapped to :math:`z = G^{-1/2} x`.
    2. **Whitening per problem.** With :math:`T_i` the covariance of the pool in that frame,
       :math:`w(x) = T_i^{-1/2} (z(x) - \bar z_i)` (``[N, n, K]``): the pool's mean and
       covariance become ``0`` and ``I``. Both steps are symmetric functions of the pools.
    3. **Cross-fitting.** A seeded random permutation splits the problems into halves ``A``
       (``N // 2``) and ``B`` (the rest). On ``A``,
       :math:`M_A = \frac1{|A|} \sum_{i \in A} w_{i0} w_{i0}^\top` (:math:`w_{i0}` the
       truth's whitened vector; ``M = I`` in expectation under calibration), and each problem
       of ``B`` ranks its truth's statistic among its draws',

       .. math:: s(w) = w^\top (I - M_A^{-1}) w, \qquad
                 r_i = \#\{j : s(w_{ij}) < s(w_{i0})\},

       twice the Gaussian log-likelihood ratio of :math:`N(0, M_A)` against :math:`N(0, I)`
       (up to a constant): large where the truths lie, relative to their pools, in a direction
       the draws do not cover. Then the same with ``A`` and ``B`` swapped. Ties are broken
       uniformly at random (seeded) as in :func:`sbc_ranks`, after rounding ``s`` to 9
       significant digits of the pool's largest :math:`|s|`.
    4. **Test.** :func:`sbc_uniformity` of each half's ``L``-ranks, combined by Bonferroni:
       :math:`p = \min(1, 2 \min(p_A, p_B))` (chi-square and KS alike).

    Exact under calibration: given the unordered pools, an exact posterior puts the truth at a
    uniformly random, independent place in each pool; ``G``, the whitening and the split are
    functions of the pools (and the seed) only, and ``M_A`` of the truths of ``A`` only, so the
    ranks of ``B`` are i.i.d. uniform on ``0..L`` (and those of ``A``, by symmetry). Unlike
    :func:`sbc_joint_ranks`, whose statistic is fixed in advance, ``s`` learns the direction of
    a misfit, e.g. the ignored correlation of draws with the right marginals (docs/calibration.md,
    "Joint rank"); the price is that each half sees only ``N / 2`` problems.

    The result is invariant under an invertible affine map :math:`\theta \mapsto A\theta + b`
    of the summaries (step 1 makes it an orthogonal map common to all problems, under which
    ``s`` is invariant), up to rounding. Singular pools (a constant summary, ``K >= L``,
    repeated draws) are handled by pseudo-inverse square roots (eigenvalues below ``max(n, K)``
    float64 eps times the largest dropped); ``M_A``'s eigenvalues are floored at ``1/n`` (a
    half too small to estimate ``M`` in some direction gives a finite statistic there, and
    the test stays exact). Computed in float64; integer or bool summaries are taken as float64.
    Needs ``N >= 4`` (two problems per half).

    Returns ``{"pvalue": float, "pvalue_ks": float, "ranks": Tensor [N] (long, each problem's
    rank under the statistic learned on the other half), "half": Tensor [N] (long, 0 for A,
    1 for B), "pvalues": [p_A, p_B] (chi-square), "pvalues_ks": [p_A, p_B], "m": [M_A, M_B]
    (Tensors [K, K], in the frame of step 1)}``. Reject joint calibration at level :math:`a`
    when ``pvalue < a``.
    """
    check_truth_draws(truth, draws)
    seed = check_seed("seed", seed)
    n_sims, n_draws, k = draws.shape
    if n_sims < 4:
        raise ValueError(
            f"truth/draws: the cross-fitted test needs N >= 4 problems (two per half), "
            f"received N = {n_sims}"
        )
    pool = torch.cat([truth[:, None, :], draws], 1).double().cpu()  # [N, n, K], the truth first
    n = pool.shape[1]
    x = pool - pool.mean(1, keepdim=True)
    cov = x.transpose(1, 2) @ x / n  # [N, K, K]
    z = x @ _inv_sqrt_psd(cov.mean(0), n * n_sims)  # the common frame; G^-1/2 is symmetric
    w = z @ _inv_sqrt_psd(z.transpose(1, 2) @ z / n, n)  # [N, n, K], whitened per pool
    gen = torch.Generator().manual_seed(offset_seed(seed, 5))
    perm = torch.randperm(n_sims, generator=gen)
    half = torch.zeros(n_sims, dtype=torch.long)
    half[perm[n_sims // 2 :]] = 1
    gen_tie = torch.Generator().manual_seed(offset_seed(seed, 6))
    tie_u = torch.rand(n_sims, generator=gen_tie, dtype=torch.float64)
    ranks = torch.zeros(n_sims, dtype=torch.long)
    eye = torch.eye(k, dtype=torch.float64)
    ms, pchi, pks = [], [], []
    for h in (0, 1):
        fit, test = half == h, half != h
        w0 = w[fit, 0]  # [|fit|, K]
        m = w0.T @ w0 / w0.shape[0]
        e, v = torch.linalg.eigh(m)
        q = eye - v @ torch.diag(1.0 / e.clamp_min(1.0 / n)) @ v.T
        s = torch.einsum("inj,jk,ink->in", w[test], q, w[test])  # [|test|, n]
        scale = s.abs().amax(1, keepdim=True)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        s = torch.round(s / scale * 1e9)
        less = (s[:, 1:] < s[:, :1]).sum(1)
        ties = (s[:, 1:] == s[:, :1]).sum(1)
        ranks[test] = less + torch.floor(tie_u[test] * (ties + 1).double()).long()
        u = sbc_uniformity(ranks[test], n_draws, seed=offset_seed(seed, 7 + h))
        ms.append(m)
        pchi.append(u["pvalue"])
        pks.append(u["pvalue_ks"])
    # ms[h] was fitted on half h and ranks the other half: report p-values per ranked half
    p_a, p_b = pchi[1], pchi[0]
    pk_a, pk_b = pks[1], pks[0]
    return {
        "pvalue": min(1.0, 2 * min(p_a, p_b)),
        "pvalue_ks": min(1.0, 2 * min(pk_a, pk_b)),
        "ranks": ranks.to(truth.device),
        "half": half.to(truth.device),
        "pvalues": [p_a, p_b],
        "pvalues_ks": [pk_a, pk_b],
        "m": ms,
    }


def sbc_pit(ranks: Tensor, n_draws: int, *, seed: int = 0) -> Tensor:
    """Randomised PIT values :math:`u = (r + V)/(L+1)`, :math:`V \\sim U(0, 1)` seeded by
    ``seed``, of the same shape as ``ranks``: ``[N, K] -> [N, K]``, ``[N] -> [N]`` (ranks of
    one summary). Exactly U(0,1) if calibrated."""
    n_draws = check_int("n_draws", n_draws, minimum=1)
    seed = check_seed("seed", seed)
    check_ranks(ranks, n_draws)
    gen = torch.Generator().manual_seed(offset_seed(seed, 1))
    v = torch.rand(ranks.shape, generator=gen, dtype=torch.float64).to(ranks.device)
    return (ranks.double() + v) / (n_draws + 1)


def _n_bins(n_sims: int, n_draws: int, n_bins: int | None) -> int:
    """``B = min(20, N // 5, L + 1)`` (at least 2): about five or more expected per bin."""
    b = n_bins or min(20, n_sims // 5)
    return max(2, min(int(b), n_draws + 1))


def sbc_uniformity(
    ranks: Tensor,
    n_draws: int,
    *,
    n_bins: int | None = None,
    seed: int = 0,
) -> dict:
    """Uniformity tests of SBC ranks ``[N, K]`` (or ``[N]``, one summary) with values in
    ``0..L`` (``L = n_draws``).

    ``n_bins``: the chi-square bins ``B``; default ``min(20, N // 5)``. Either way ``B`` is
    clamped to ``2..L + 1`` (more bins than rank values would leave bins that no rank can
    reach), so an explicit ``n_bins > L + 1`` is reduced to ``L + 1`` silently; the ``B`` used
    is returned as ``"n_bins"``.

    Returns ``{"chi2", "chi2_pvalue", "ks_pvalue": Python lists of K floats (one per summary),
    "n_bins": B, "pvalue": float, "pvalue_ks": float}`` where ``pvalue`` is the
    Bonferroni-combined minimum of the per-summary chi-square p-values (the value reported as
    ``sbc_pvalue``) and ``pvalue_ks`` the same for KS. Reject calibration at level :math:`a`
    when ``pvalue < a``.
    """
    n_draws = check_int("n_draws", n_draws, minimum=1)
    seed = check_seed("seed", seed)
    if n_bins is not None:
        n_bins = check_int("n_bins", n_bins, minimum=2)
    ranks = check_ranks(ranks, n_draws)
    if ranks.is_floating_point():
        ranks = ranks.long()
    n, k = ranks.shape
    b = _n_bins(n, n_draws, n_bins)
    # rank value v in 0..L goes to bin floor(v B / (L+1)); expected counts follow the number
    # of rank values per bin (all equal when B divides L + 1)
    values_per_bin = np.bincount(np.arange(n_draws + 1) * b // (n_draws + 1), minlength=b)
    expected = n * values_per_bin / (n_draws + 1)
    r = ranks.cpu().numpy().astype(np.int64)  # r * b overflowed narrow integer ranks
    chi2, pchi = [], []
    for j in range(k):
        counts = np.bincount(r[:, j] * b // (n_draws + 1), minlength=b)
        res = stats.chisquare(counts, expected)
        chi2.append(float(res.statistic))
        pchi.append(float(res.pvalue))
    pit = sbc_pit(ranks, n_draws, seed=seed).cpu().numpy()
    pks = [float(stats.kstest(pit[:, j], "uniform").pvalue) for j in range(k)]
    return {
        "chi2": chi2,
        "chi2_pvalue": pchi,
        "ks_pvalue": pks,
        "n_bins": b,
        "pvalue": min(1.0, k * min(pchi)),
        "pvalue_ks": min(1.0, k * min(pks)),
    }


def _simulated_band(
    n_sims: int, cdf: np.ndarray, prob: float, n_trials: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Simultaneous band by simulation: tune the pointwise binomial level ``g`` so that a
    fraction ``prob`` of simulated uniform ECDFs lies entirely inside the pointwise band."""
    rng = np.random.default_rng(seed)
    sims = np.sort(rng.uniform(size=(n_trials, n_sims)), axis=1)
    ecdfs = np.stack([np.searchsorted(s, cdf, side="right") for s in sims])  # counts

    def inside(g: float) -> float:
        lo = stats.binom.ppf((1 - g) / 2, n_sims, cdf)
        hi = stats.binom.ppf((1 + g) / 2, n_sims, cdf)
        return float(((ecdfs >= lo) & (ecdfs <= hi)).all(1).mean())

    lo_g, hi_g = prob, 1 - 1e-9
    for _ in range(40):
        mid = 0.5 * (lo_g + hi_g)
        if inside(mid) < prob:
            lo_g = mid
        else:
            hi_g = mid
    g = hi_g
    return (
        stats.binom.ppf((1 - g) / 2, n_sims, cdf) / n_sims,
        stats.binom.ppf((1 + g) / 2, n_sims, cdf) / n_sims,
    )


def ecdf_band(
    n_sims: int, eval_points: np.ndarray, prob: float = 0.95, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, str]:
    """Simultaneous ``prob`` band ``(lower, upper)`` of a U(0,1) ECDF of ``N`` values at
    ``eval_points [M]``; the third value names the method used."""
    from .._posterior_args import _check_level

    n_sims = check_int("n_sims", n_sims, minimum=1)
    prob = _check_level(prob, "prob")
    z = np.asarray(eval_points, dtype=float)
    if z.ndim != 1 or not (np.isfinite(z).all() and (z >= 0).all() and (z <= 1).all()):
        raise ValueError(
            f"eval_points: expected a 1-D array of values in [0, 1], received shape {z.shape} "
            f"with range [{np.nanmin(z) if z.size else 'n/a'}, {np.nanmax(z) if z.size else 'n/a'}]"
        )
    try:
        from arviz.stats.ecdf_utils import ecdf_confidence_band

        lo, hi = ecdf_confidence_band(n_sims, z, z, prob=prob, method="optimized")
        return np.asarray(lo), np.asarray(hi), "arviz ecdf_confidence_band (optimized)"
    except ImportError:  # pragma: no cover - ArviZ >= 1
        lo, hi = _simulated_band(n_sims, z, prob, seed=seed)
        return lo, hi, "bayesphys simulated simultaneous band"


def _eval_points(n_draws: int, max_points: int = 100) -> np.ndarray:
    """``z_m = m/(L+1)``, ``m = 1..L`` (a subset of at most ``max_points`` when ``L`` is big)."""
    m = np.arange(1, n_draws + 1)
    if len(m) > max_points:
        m = np.unique(np.linspace(1, n_draws, max_points).round().astype(int))
    return m / (n_draws + 1)


def pit_ecdf(ranks: Tensor, n_draws: int) -> tuple[np.ndarray, np.ndarray]:
    """``(z [M], F_hat [M, K])``: the rank ECDF :math:`\\#\\{r_i < m\\}/N` at ``z_m = m/(L+1)``."""
    n_draws = check_int("n_draws", n_draws, minimum=1)
    r = check_ranks(ranks, n_draws).cpu().numpy()
    z = _eval_points(n_draws)
    m = np.round(z * (n_draws + 1)).astype(int)
    f = (r[None, :, :] < m[:, None, None]).mean(1)
    return z, f


def plot_pit_ecdf(
    ranks: Tensor,
    n_draws: int,
    names: Sequence[str] | None = None,
    *,
    prob: float = 0.95,
    ax: matplotlib.axes.Axes | None = None,
    title: str | None = None,
) -> matplotlib.axes.Axes:
    """PIT-ECDF difference plot :math:`\\hat F(z) - z` of ranks ``[N, K]`` with the
    simultaneous ``prob`` band; one line per summary. Returns the matplotlib axes."""
    import matplotlib.pyplot as plt

    n_draws = check_int("n_draws", n_draws, minimum=1)
    ranks = check_ranks(ranks, n_draws)
    n, k = ranks.shape
    names = _check_names(names, k) if names is not None else [f"s{j}" for j in range(k)]
    z, f = pit_ecdf(ranks, n_draws)
    lo, hi, method = ecdf_band(n, z, prob)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3.6), layout="constrained")
    ax.fill_between(z, lo - z, hi - z, color="0.85", step="mid", label=f"{prob:.0%} simult. band")
    # close the curves at z = 0 and z = 1, where every ECDF equals the uniform CDF
    zc = np.concatenate([[0.0], z, [1.0]])
    for j in range(k):
        fc = np.concatenate([[0.0], f[:, j], [1.0]])
        ax.plot(zc, fc - zc, lw=1, color=line_colour(j), label=names[j])
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("fractional rank z")
    ax.set_ylabel("ECDF(z) - z")
    from .plots import TITLE_PT, legend_below

    if title:
        ax.set_title(title, fontsize=TITLE_PT)
    # under the axes, off the curves; the band's method titles it (a note in the corner ran
    # under the legend)
    legend_below(ax, ncol=3, title=f"band: {method}", title_fontsize=7)
    return ax


def _check_names(names, k: int) -> list[str]:
    """``k`` distinct non-empty summary names (a single string is refused: pass a list)."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise TypeError(f"names: expected a list of {k} summary names, received {names!r}")
    names = list(names)
    if len(names) != k:
        raise ValueError(f"names: expected {k} names (one per summary), received {len(names)}")
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise TypeError(f"names: expected non-empty strings, received {bad!r}")
    if len(set(names)) != k:
        raise ValueError(f"names: expected distinct names, received {names}")
    return names


def ranks_inference_data(
    ranks: Tensor,
    names: Sequence[str],
    n_draws: int,
    *,
    group: str = "prior_sbc",
    idata: arviz.InferenceData | xr.DataTree | None = None,
    attrs: dict | None = None,
) -> arviz.InferenceData | xr.DataTree:
    """InferenceData with SBC ranks in group ``group``: one variable per summary with dim
    ``sbc_simulation`` (``[N]``), plus ``sbc_n_draws`` (``L``, 0-d).

    ``build_inference_data`` gives only ``SAMPLE_GROUPS`` ``(chain, draw)`` dims, so the ranks
    carry the explicit dim ``sbc_simulation``. With ``idata`` given, the group is added to it;
    ``attrs`` (e.g. problem and method) are stored on the group.
    """
    from ..inference_data import (
        ARVIZ_V1,
        SAMPLE_GROUPS,
        build_inference_data,
        group_dataset,
        group_names,
    )

    n_draws = check_int("n_draws", n_draws, minimum=1)
    ranks = check_ranks(ranks, n_draws)
    names = _check_names(names, ranks.shape[1])
    if "sbc_n_draws" in names:
        raise ValueError("names: 'sbc_n_draws' is the name of the stored L; rename the summary")
    if not isinstance(group, str) or not group:
        raise TypeError(f"group: expected a non-empty string, received {group!r}")
    if group in (*SAMPLE_GROUPS, "observed_data", "constant_data"):
        raise ValueError(
            f"group: expected a group of its own (e.g. 'prior_sbc'), received the standard "
            f"group {group!r}"
        )
    if idata is not None and group in group_names(idata):
        raise ValueError(f"group: {group!r} is already a group of idata; pick another name")
    variables = {nm: ranks[:, j].cpu().numpy() for j, nm in enumerate(names)}
    variables["sbc_n_draws"] = np.asarray(int(n_draws))
    dims = {nm: ["sbc_simulation"] for nm in names}
    coords = {"sbc_simulation": np.arange(ranks.shape[0])}
    new = build_inference_data(extra_groups={group: variables}, coords=coords, dims=dims)
    if ARVIZ_V1:  # pragma: no cover
        new[group].attrs.update(attrs or {})
    else:
        group_dataset(new, group).attrs.update(attrs or {})
    if idata is None:
        return new
    ds = group_dataset(new, group)
    if ARVIZ_V1:  # pragma: no cover
        idata[group] = type(idata)(ds)
        return idata
    idata.add_groups({group: ds})
    return idata
