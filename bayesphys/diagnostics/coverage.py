r"""Expected coverage, TARP, field calibration curves and scoring-rule summaries.

Given ``truth [N, K]`` and posterior draws ``draws [N, L, K]`` of ``K`` scalar summaries (a
``truth`` on another device than ``draws`` is moved to the draws' device, as
:func:`field_calibration_curve` moves each truth to its draws):

* **central coverage** at level :math:`\alpha`: the fraction of :math:`(i, k)` whose truth lies
  in the central :math:`\alpha` credible interval, read off the randomised PIT of the SBC rank
  (exactly nominal in expectation when calibrated, whatever ``L``);
* **HDI coverage**: the same for the sample highest-density interval, computed exchangeably:
  the truth is pooled with its ``L`` draws, each of the ``L + 1`` pooled values gets the size
  ``m`` of the first shortest run of ``m`` sorted pooled values that contains it (its depth;
  the shortest run of ``m`` values is the 1-D sample HDI of a unimodal posterior), and the
  truth is inside the :math:`\alpha` HDI when the randomised rank of its depth among the pool is
  below :math:`\alpha` (exactly nominal in expectation when calibrated, whatever ``L``; the
  shortest run of the ``L`` draws *alone* under-covers, 0.44 instead of 0.5 and 0.88 instead of
  0.9 at ``L = 49``, because the run is chosen where the draws, not the truth, are dense);
* **TARP** (Lemos, Coogan, Hezaveh, Perreault-Levasseur 2023, "Sampling-based accuracy testing
  of posterior estimators for general inference", ICML): for reference points
  :math:`\theta^r_i` drawn uniformly in the (min-max normalised) box of the truths and draws
  together (normalising by the truths alone breaks the exchangeability of a truth that is
  the box's edge: an exact posterior with ``K = 16``, ``N = 20`` was rejected at 5 % at the 1 %
  level),
  :math:`f_i = (\#\{j : \lVert\theta_{ij}-\theta^r_i\rVert < \lVert\theta_i-\theta^r_i\rVert\}
  + V_i)/(L+1)`, :math:`V_i \sim U(0,1)` (randomised like the SBC PIT, ties between the
  distances broken at random, so that it is exactly uniform under calibration; Lemos et al. use
  the fraction over :math:`L`), and :math:`\mathrm{ECP}(\alpha) = \frac1N\#\{i : f_i < \alpha\}`. A
  calibrated posterior gives :math:`\mathrm{ECP}(\alpha) = \alpha` and :math:`f_i \sim U(0,1)`. We
  report :math:`\mathrm{ATC} = \int_{1/2}^{1} (\mathrm{ECP}(\alpha) - \alpha)\, d\alpha` (sbi's ATC
  is the same sum over its histogram grid without the :math:`d\alpha`) and a KS p-value of the
  :math:`f_i` against U(0,1). ATC < 0 signals overconfidence, ATC > 0 underconfidence; a
  biased posterior makes ECP cross the diagonal, which the KS p-value detects even where the
  ATC stays small;
* **CRPS** (sample form, :func:`bayesphys.metrics.crps_samples`) and **NLL** of the truth under
  the moment-matched Gaussian of the draws (:func:`bayesphys.metrics.gaussian_nll`);
* the **field calibration curve**: observed vs nominal pointwise coverage over a grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scipy import stats
from torch import Tensor

from .._checks import check_int, check_seed, did_you_mean, offset_seed
from .._device import check_finite, values_as_tensor
from .._posterior_args import _check_level, _check_levels
from .._posterior_base import is_posterior, missing_members
from ..metrics import calibration_curve, crps_samples, gaussian_nll
from ..posterior import Posterior, SamplePosterior
from .sbc import check_truth_draws, diagnostics_seed, randomised_pit, sbc_pit, sbc_ranks
from .simulate import DEFAULT_LEVELS, _pit_coverage

__all__ = [
    "central_coverage",
    "hdi_coverage",
    "hdi_pit",
    "expected_coverage",
    "tarp",
    "score_summary",
    "field_calibration_curve",
]


def _float_summaries(truth: Tensor, draws: Tensor) -> tuple[Tensor, Tensor]:
    """Integer or bool summaries (a count, a model indicator) as float64: the ranks compare
    them as they are, but TARP's box and HDI runs subtract values (``-`` is refused for bool
    tensors) and the scores need floats. Floating-point summaries are returned unchanged."""
    if not truth.is_floating_point():
        truth = truth.double()
    if not draws.is_floating_point():
        draws = draws.double()
    return truth, draws


def central_coverage(truth: Tensor, draws: Tensor, level: float, *, seed: int = 0) -> Tensor:
    """Inside-indicator ``[N, K]`` of the truth in the central ``level`` credible interval.

    Uses the randomised PIT of the SBC rank, :math:`u = (r + V)/(L+1)`, and tests
    :math:`|u - 1/2| \\le \\alpha/2`: exactly nominal in expectation for a calibrated posterior
    at any ``L`` (empirical quantiles of ``L`` draws under-cover by about
    :math:`2\\alpha/(L+1)`).
    """
    truth, draws = check_truth_draws(truth, draws)
    level = _check_level(level)
    u = sbc_pit(sbc_ranks(truth, draws, seed=seed), draws.shape[1], seed=seed)
    return (u - 0.5).abs() <= level / 2


def hdi_pit(truth: Tensor, draws: Tensor, *, seed: int = 0, max_sizes: int = 100) -> Tensor:
    r"""Randomised HDI rank ``[N, K]`` of the truth, exactly U(0, 1) for a calibrated posterior.

    The truth is pooled with its ``L`` draws (``n = L + 1`` values); for ``m = 2..n`` the
    shortest run of ``m`` sorted pooled values is found (``max_sizes`` evenly spaced ``m`` when
    ``L`` is larger), and each value's depth ``e`` is the first ``m`` whose run contains it
    (values equal to the run's ends count as inside, so tied values share a depth). The depth
    is a symmetric function of the pool, so under calibration the truth's rank among the
    pooled depths is uniform; ties are broken at random:
    :math:`u = (\#\{j: e_j < e_0\} + V (\#\{j: e_j = e_0\} + 1))/(L+1)`. Small ``u``: the
    truth lies deep inside the sample HDI. ``V`` is drawn per entry ``(i, k)`` by position
    (``seed``): the depths are the same for a problem in any place, its ``u`` only in
    distribution.
    """
    truth, draws = check_truth_draws(truth, draws)
    truth, draws = _float_summaries(truth, draws)
    seed = check_seed("seed", seed)
    max_sizes = check_int("max_sizes", max_sizes, minimum=1)
    pool = torch.cat([truth[:, None, :], draws], 1)  # [N, n, K], the truth first
    n = pool.shape[1]
    s = pool.sort(1).values
    # int32 and updated in place (int64 and a new tensor per run size peaked at 17x the draws)
    depth = torch.full(pool.shape, n, dtype=torch.int32, device=pool.device)
    # every run size up to L = max_sizes + 1, else max_sizes sizes (the cost is O(N L K) per size;
    # any fixed set of sizes keeps the depth symmetric, so the rank stays exact, only coarser)
    sizes = (
        range(2, n)
        if n <= max_sizes + 2
        else torch.linspace(2, n - 1, max_sizes).round().long().unique().tolist()
    )
    for m in sizes:
        width = s[:, m - 1 :, :] - s[:, : n - m + 1, :]
        j = width.argmin(1, keepdim=True)
        inside = pool >= s.gather(1, j)
        inside &= pool <= s.gather(1, j + m - 1)
        inside &= depth == n
        depth.masked_fill_(inside, m)
        del width, inside
    d_true, d_draw = depth[:, :1, :], depth[:, 1:, :]
    less = (d_draw < d_true).sum(1)
    ties = (d_draw == d_true).sum(1)
    gen = torch.Generator().manual_seed(diagnostics_seed(seed, 2))
    v = torch.rand(less.shape, generator=gen, dtype=torch.float64)
    return randomised_pit(less, ties, v, n).to(truth.device)


def hdi_coverage(truth: Tensor, draws: Tensor, level: float, *, seed: int = 0) -> Tensor:
    r"""Inside-indicator ``[N, K]`` of the truth in the sample ``level`` highest-density
    interval, read off the randomised HDI rank :func:`hdi_pit` (``u <= level``).

    Exactly nominal in expectation for a calibrated posterior at any ``L``. (The shortest run of
    :math:`\mathrm{round}(\alpha (L+1)) + 1` sorted draws *alone* does not cover
    :math:`\alpha`: it is placed where the draws happen to be dense, which the truth is not
    part of — 0.40 for 0.5 at ``L = 9``, 0.455 for 0.5 and 0.884 for 0.9 at ``L = 99`` on an
    exact Gaussian posterior — and it cannot reach 0.9 at ``L = 9``.)
    """
    level = _check_level(level)
    return hdi_pit(truth, draws, seed=seed) <= level


def expected_coverage(
    truth: Tensor,
    draws: Tensor,
    levels: Sequence[float] = DEFAULT_LEVELS,
    kind: str = "central",
    *,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """``(nominal [M], observed [M, K])`` expected coverage per summary (``kind`` central|hdi)."""
    if kind not in ("central", "hdi"):
        raise ValueError(
            f"kind: expected 'central' or 'hdi', received {kind!r}"
            f"{did_you_mean(kind, ('central', 'hdi'))}"
        )
    levels = _check_levels(levels)
    if kind == "central":  # one randomised PIT per (i, k), thresholded at every level
        truth, draws = check_truth_draws(truth, draws)
        u = sbc_pit(sbc_ranks(truth, draws, seed=seed), draws.shape[1], seed=seed)
        obs = torch.stack([((u - 0.5).abs() <= lv / 2).double().mean(0) for lv in levels])
    else:  # one HDI rank per (i, k), thresholded at every level
        u = hdi_pit(truth, draws, seed=seed)
        obs = torch.stack([(u <= lv).double().mean(0) for lv in levels])
    return torch.tensor(levels, dtype=torch.float64), obs


def tarp(
    truth: Tensor,
    draws: Tensor,
    *,
    seed: int = 0,
    n_alpha: int = 101,
) -> dict:
    r"""TARP expected coverage of ``K``-dim vectors ``truth [N, K]`` among ``draws [N, L, K]``.

    Coordinates are min-max normalised by the range of truths and draws together; references
    are uniform in ``[0, 1]^K``, one per simulation (integer or bool summaries are taken as
    float64). Returns ``{"alpha" [n_alpha], "ecp" [n_alpha],
    "f" [N], "atc": float, "pvalue": float}``: ``f`` the randomised PIT of each truth's
    distance to its reference among its draws' distances (ties broken at random, as for
    :func:`sbc_ranks`; float64 on the CPU), :math:`\mathrm{ECP}(\alpha) = \#\{i: f_i <
    \alpha\}/N` at ``alpha = linspace(0, 1, n_alpha)``, ``atc``
    :math:`= \int_{1/2}^{1} (\mathrm{ECP}(\alpha) - \alpha)\,d\alpha` by the trapezoid rule
    over ``1/2`` and the grid points above it (positive: intervals too wide), and ``pvalue``
    the Kolmogorov-Smirnov test of ``f`` against U(0, 1).
    """
    truth, draws = check_truth_draws(truth, draws)
    truth, draws = _float_summaries(truth, draws)
    seed = check_seed("seed", seed)
    n_alpha = check_int("n_alpha", n_alpha, minimum=2)
    # the box of truths *and* draws: a symmetric function of each problem's (truth, draws), so
    # a calibrated truth stays exchangeable with its draws (a box of the truths alone puts the
    # extreme truths on its edge, farther from the reference than their draws)
    pooled = torch.cat([truth, draws.reshape(-1, draws.shape[-1])])
    lo = pooled.min(0).values
    span = pooled.max(0).values - lo
    span = torch.where(span > 0, span, torch.ones_like(span))  # a constant parameter: no scale
    t = (truth - lo) / span
    d = (draws - lo) / span
    gen = torch.Generator().manual_seed(offset_seed(seed, 104729))
    ref = torch.rand(t.shape, generator=gen, dtype=t.dtype).to(t.device)
    d_draw = (d - ref[:, None, :]).norm(dim=-1)  # [N, L]
    d_true = (t - ref).norm(dim=-1)  # [N]
    v = torch.rand(d_true.shape, generator=gen, dtype=t.dtype).to(t.device)
    # ties (discrete parameters, atoms) are broken at random as for the SBC ranks:
    # less + v (ties + 1) is uniform on [less, less + ties + 1), i.e. rank + V
    less = (d_draw < d_true[:, None]).sum(1)
    ties = (d_draw == d_true[:, None]).sum(1)
    f = randomised_pit(less, ties, v, d_draw.shape[1] + 1)
    alpha = torch.linspace(0, 1, n_alpha, dtype=torch.float64)
    ecp = (f[None, :] < alpha[:, None]).double().mean(1)
    # ATC over [1/2, 1] exactly: ECP at a = 1/2 joins the grid's points above it (with an
    # even n_alpha 1/2 is no grid point, and n_alpha = 2 integrated over [1, 1] only)
    upper = alpha > 0.5
    a_u = torch.cat([alpha.new_tensor([0.5]), alpha[upper]])
    e_u = torch.cat([(f < 0.5).double().mean().reshape(1), ecp[upper]])
    atc = float(torch.trapezoid(e_u - a_u, a_u))
    pval = float(stats.kstest(f.cpu().numpy(), "uniform").pvalue)
    return {"alpha": alpha, "ecp": ecp, "f": f, "atc": atc, "pvalue": pval}


def score_summary(truth: Tensor, draws: Tensor) -> dict:
    """Mean CRPS (sample form) and mean NLL under the moment-matched Gaussian, over ``[N, K]``.

    The CRPS is that of the ``L`` draws' empirical law (:func:`~bayesphys.metrics.crps_samples`
    with ``fair=False``); the Gaussian has each problem's draw mean and sample variance
    (``correction=1``, divisor ``L - 1``). Both are in the units of the summaries; lower is
    better. Integer or bool summaries are taken as float64.
    """
    truth, draws = check_truth_draws(truth, draws)
    # floats are returned, so no graph is kept: a truth that requires grad warned ("Converting
    # a tensor with requires_grad=True to a scalar"), an error under ``python -W error``
    truth, draws = _float_summaries(truth.detach(), draws.detach())
    if draws.shape[1] < 2:
        raise ValueError(
            f"draws: expected at least 2 draws per problem (L >= 2) for the moment-matched NLL, "
            f"received L = {draws.shape[1]}"
        )
    crps = crps_samples(draws.transpose(0, 1), truth)
    var = draws.var(1).clamp_min(torch.finfo(draws.dtype).tiny)
    nll = gaussian_nll(draws.mean(1), var, truth)
    return {"crps": float(crps), "nll": float(nll)}


def field_calibration_curve(
    posteriors: Sequence[Posterior | Tensor] | Tensor,
    truths: Sequence[Tensor] | Tensor,
    levels: Sequence[float] = DEFAULT_LEVELS,
    *,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    r"""Observed vs nominal pointwise coverage over a grid, averaged over problems.

    ``posteriors``: a sequence of ``Posterior`` or draws ``[S, *event]``; ``truths``: matching
    fields ``[*event]`` (``[*batch, *event]`` for a posterior with a batch). Returns
    ``(nominal [M], observed [M])``.

    A posterior's own ``interval`` decides coverage, except for draws (a tensor, or a
    :class:`~bayesphys.SamplePosterior`, whose chains and draws are pooled into ``S``): those
    are scored by the randomised PIT of the truth among the ``S`` draws at every grid point,
    :math:`|u - 1/2| \le \alpha/2` with :math:`u = (\#\{x < t\} + V(\#\{x = t\} + 1))/(S+1)`,
    :math:`V \sim U(0, 1)` seeded by ``seed``, as :func:`simulate_and_infer` does: exactly
    nominal in expectation for exchangeable draws at any ``S``, where their interpolated
    empirical quantiles under-cover by about :math:`2\alpha/(S+1)` (0.82 for 0.9 at ``S = 19``).
    """
    if is_posterior(posteriors) or not isinstance(posteriors, (Sequence, Tensor)):
        raise TypeError(
            "posteriors: expected a sequence of Posterior or draws [S, *event] (one per problem), "
            f"received {type(posteriors).__name__}"
        )
    if not isinstance(truths, (Sequence, Tensor)):
        raise TypeError(
            f"truths: expected a sequence of fields [*event], received {type(truths).__name__}"
        )
    if len(posteriors) != len(truths) or len(truths) == 0:
        raise ValueError(
            f"posteriors/truths: expected equal non-zero lengths, received {len(posteriors)} "
            f"and {len(truths)}"
        )
    levels = _check_levels(levels)
    seed = check_seed("seed", seed)
    gen = torch.Generator().manual_seed(offset_seed(seed, 104723))
    rows = []
    for i, (p, t) in enumerate(zip(posteriors, truths)):
        if isinstance(p, SamplePosterior):
            p = p._flat()
        # through numpy, not torch.as_tensor: a list of Python floats was rounded to float32
        t = t if isinstance(t, Tensor) else values_as_tensor(t)
        if not isinstance(p, Tensor):
            # named here: metrics.calibration_curve named its own 'y' and
            # 'posterior_or_samples', and refused the numpy truth the draws branch takes
            if not is_posterior(p):
                raise TypeError(
                    f"posteriors[{i}]: expected a Posterior or draws [S, *event], received "
                    f"{type(p).__name__}{missing_members(p)}"
                )
            want = (*p.batch_shape, *p.event_shape)
            if tuple(t.shape) != want:
                raise ValueError(
                    f"truths[{i}]: expected shape {want} (posteriors[{i}]'s batch + event), "
                    f"received {tuple(t.shape)}"
                )
            check_finite(f"truths[{i}]", t)
            rows.append(calibration_curve(p, t, levels)[1])
            continue
        if p.ndim == 0 or p.shape[0] == 0 or tuple(p.shape[1:]) != tuple(t.shape):
            raise ValueError(
                f"posteriors[{i}]/truths[{i}]: expected draws [S, *event] with S >= 1 and a "
                f"truth [*event], received {tuple(p.shape)} and {tuple(t.shape)}"
            )
        check_finite(f"posteriors[{i}]", p)
        check_finite(f"truths[{i}]", t)
        # compared in the promoted dtype, as simulate_and_infer does: a cast of the truth to
        # the draws' dtype truncated a float truth among integer draws (1.5 read as 1)
        rows.append(_pit_coverage(p, t.to(p.device), levels, gen))
    obs = torch.stack(rows).mean(0)
    return torch.tensor(list(levels), dtype=torch.float64), obs
