r"""Joint simulation-based calibration of a summary vector (Talts et al. 2018, extended).

The per-summary ranks of :mod:`~bayesphys.diagnostics.sbc` see each marginal alone; these
tests rank the whole vector :math:`s(\theta) \in \mathbb R^K` at once:

* :func:`sbc_joint_ranks`: the pooled Mahalanobis rank, a fixed statistic of each problem's
  pool (truth and draws), exactly uniform under calibration and affine invariant;
* :func:`sbc_joint_crossfit`: a Gaussian likelihood-ratio statistic learned on one half of the
  problems and ranked on the other, and the reverse; it learns the direction of a misfit
  (e.g. an ignored correlation) and stays exact under calibration.

Both return ranks on ``0..L`` read with :func:`~bayesphys.diagnostics.sbc_uniformity`; the
power of each at the default sizes is in docs/calibration.md. A ``truth`` on another device
than ``draws`` is moved to the draws' device, where the ranks are returned.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_seed, offset_seed
from .sbc import check_truth_draws, diagnostics_seed, sbc_uniformity, tie_broken_rank

__all__ = ["sbc_joint_ranks", "sbc_joint_crossfit"]


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
    truth, draws = check_truth_draws(truth, draws)
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
    gen = torch.Generator().manual_seed(diagnostics_seed(seed, 3))
    v = torch.rand(ties.shape, generator=gen, dtype=torch.float64).to(ties.device)
    return tie_broken_rank(less, ties, v)


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
    a misfit, e.g. the ignored correlation of draws with the right marginals
    (docs/calibration_notes.md, "Joint rank"); the price is that each half sees only ``N / 2``
    problems.

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
    truth, draws = check_truth_draws(truth, draws)
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
    gen = torch.Generator().manual_seed(diagnostics_seed(seed, 5))
    perm = torch.randperm(n_sims, generator=gen)
    half = torch.zeros(n_sims, dtype=torch.long)
    half[perm[n_sims // 2 :]] = 1
    gen_tie = torch.Generator().manual_seed(diagnostics_seed(seed, 6))
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
        ranks[test] = tie_broken_rank(less, ties, tie_u[test])
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
