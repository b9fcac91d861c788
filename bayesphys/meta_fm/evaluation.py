r"""Population metrics and uncertainty diagnostics (anchor section 1.8 and 6.2).

* :func:`population_metrics`: exact :math:`W_1`, :math:`W_2` (POT ``emd2``, via
  :func:`bayesphys.metrics.wasserstein`) and the RBF MMD averaged over
  :math:`\gamma \in \{2, 1, 0.5, 0.1, 0.01, 0.005\}` (kernel :math:`e^{-\gamma\lVert a-b\rVert^2}`,
  biased V-statistic), as the reference's ``distribution_distances``.
* :func:`correlation_of_correlations`: CellOT's "r2" (anchor 1.8; not squared, so named r):
  the Pearson correlation of the strictly upper-triangular entries of the two populations'
  feature-correlation matrices.
* :func:`gaussian_w2`: the Bures formula
  :math:`W_2^2 = \lVert m_1-m_2\rVert^2 + \operatorname{tr}(S_1 + S_2 - 2(S_2^{1/2}S_1S_2^{1/2})^{1/2})`.
* :func:`pooled_prediction`: the mixture of an ensemble's predicted populations, subsampled
  to the size of the truth.
* :func:`ensemble_spread`: mean pairwise :math:`W_2` between ensemble members' predictions
  (the epistemic part of the predictive spread).
* :func:`sampling_noise_w2`: :math:`W_2` between two samples of the predicted law built from
  disjoint halves of the source points (the finite-sample, aleatoric part: a test population
  is itself a sample, so even the true law is a distance of about the floor away from it).
* :func:`conformal_radius` / :func:`conformal_coverage`: split conformal on the score
  :math:`s = W_2(\hat p, p)` (optionally divided by the spread): with calibration scores
  :math:`s_1..s_n`, :math:`\hat q` is the :math:`\lceil (n+1)(1-\alpha)\rceil`-th smallest, and
  :math:`P(s_{new} \le \hat q) \ge 1-\alpha` for an exchangeable new population.
"""  # noqa: E501

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import as_real_array, check_int, check_real, check_seed, offset_seed
from .._cloud_distances import _check_ot_memory
from .._detached import warn_detached
from .._device import check_finite
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..diagnostics.conformal import conformal_min_scores, conformal_rank
from ..metrics import mmd, wasserstein
from ._canonical import canonical_order
from ._validate import check_cloud_pair, check_populations

__all__ = [
    "MMD_GAMMAS",
    "population_metrics",
    "correlation_of_correlations",
    "mmd_anchor",
    "gaussian_w2",
    "ensemble_spread",
    "sampling_noise_w2",
    "spearman",
    "conformal_radius",
    "conformal_coverage",
    "subsample_points",
    "pooled_prediction",
]

MMD_GAMMAS = (2.0, 1.0, 0.5, 0.1, 0.01, 0.005)
r"""RBF bandwidths :math:`\gamma` of the MMD (:math:`k(x, y) = e^{-\gamma\lVert x-y\rVert^2}`),
averaged as in the reference's ``distribution_distances``."""


def _check_alpha(alpha: float, name: str = "alpha") -> float:
    """A miscoverage level as a float in the open interval ``(0, 1)``."""
    out = check_real(name, alpha)
    if not 0.0 < out < 1.0:
        raise ValueError(f"{name}: expected a miscoverage level in (0, 1), received {alpha!r}")
    return out


def _check_max_points(name: str, value: int | None) -> int | None:
    """``None`` (keep every point) or an int ``>= 1``."""
    return None if value is None else check_int(name, value, minimum=1)


def _check_w_memory(n: int, m: int, max_points: int | None) -> None:
    """Refuse, naming ``max_points`` (the argument that sizes them), exact :math:`W_p` solves
    between ``n`` and ``m`` subsampled points that cannot fit in memory
    (:func:`~bayesphys.metrics.wasserstein`'s own refusal named its ``x/y``, which the callers
    here do not have)."""
    _check_ot_memory(
        "max_points",
        n,
        m,
        "pass a smaller max_points (the benchmarks use 1000)",
        note=f"max_points={max_points}; ",
    )


def subsample_points(x: Tensor, n: int | None, seed: int = 0) -> Tensor:
    """At most ``n`` rows of ``x [m, d]`` (seeded, without replacement); ``None`` keeps all."""
    n = _check_max_points("n", n)
    seed = check_seed("seed", seed)
    if n is None or x.shape[0] <= n:
        return x
    gen = torch.Generator().manual_seed(seed)
    return x[torch.randperm(x.shape[0], generator=gen)[:n].to(x.device)]


def mmd_anchor(x: Tensor, y: Tensor) -> float:
    """RBF MMD averaged over the anchor's :math:`\\gamma` set (bandwidth ``h = 1/gamma``).

    The bandwidths are fixed in the data's units (the reference's, for standardised data of
    order 1): on coordinates of order 1000 every kernel is ~0 between distinct points and the
    score no longer tells a shifted law from the same one (``x [n, d]``, ``y [m, d]``)."""
    for name, v in (("x", x), ("y", y)):
        if not isinstance(v, Tensor):  # was AttributeError: 'list' object has no 'detach'
            raise TypeError(f"{name}: expected a torch.Tensor [n, d], received {type(v).__name__}")
    x64, y64 = x.detach().double().cpu(), y.detach().double().cpu()
    return float(mmd(x64, y64, bandwidths=[1.0 / g for g in MMD_GAMMAS])) / len(MMD_GAMMAS)


def population_metrics(
    pred: Tensor, true: Tensor, *, max_points: int | None = None, seed: int = 0
) -> dict[str, float]:
    """``{"w1", "w2", "mmd"}`` between a predicted ``[n, d]`` and a true ``[m, d]`` population.

    W1 and W2 carry the data's units; ``mmd`` (:func:`mmd_anchor`) uses bandwidths fixed in
    those units, so it is comparable only for data of order 1 (standardise first).
    ``max_points``: a population of more points is scored on a seeded subsample of them
    (``seed``), drawn from its points in a canonical (lexicographic) order, so the scores are
    those of the same points whatever the order of the rows (a population is a set; drawn by
    position, permuting a population's rows changed its score)."""
    p, q = _scored_pair(pred, true, max_points, seed)
    return {
        "w1": float(wasserstein(p.double(), q.double(), p=1)),
        "w2": float(wasserstein(p.double(), q.double(), p=2)),
        "mmd": mmd_anchor(p, q),
    }


def _population_w2(
    pred: Tensor, true: Tensor, *, max_points: int | None = None, seed: int = 0
) -> float:
    """``population_metrics(pred, true, max_points=max_points, seed=seed)["w2"]``, the same
    number bit for bit, without the :math:`W_1` solve and the MMD that ``population_metrics``
    also computes (together about three times the :math:`W_2`'s cost on 500 points)."""
    p, q = _scored_pair(pred, true, max_points, seed)
    return float(wasserstein(p.double(), q.double(), p=2))


def _scored_pair(
    pred: Tensor, true: Tensor, max_points: int | None, seed: int
) -> tuple[Tensor, Tensor]:
    """The points of ``pred [n, d]`` and ``true [m, d]`` that :func:`population_metrics`
    scores (checked; on the CPU; each a seeded subsample of at most ``max_points`` drawn from
    its points in a canonical order)."""
    max_points = _check_max_points("max_points", max_points)
    seed = check_seed("seed", seed)
    pred, true = check_cloud_pair("pred", pred, "true", true)
    pred, true = pred.detach().cpu(), true.detach().cpu()
    if max_points is not None:  # the subsample of a set: from its points in a canonical order
        pred = pred[canonical_order(pred)] if pred.shape[0] > max_points else pred
        true = true[canonical_order(true)] if true.shape[0] > max_points else true
    p = subsample_points(pred, max_points, seed)
    q = subsample_points(true, max_points, offset_seed(seed, 1))
    _check_w_memory(p.shape[0], q.shape[0], max_points)
    return p, q


#: the spread (max - min) below which a vector of correlations counts as constant: equal
#: correlations (features that are affine copies of one another, or two points) come out of
#: ``corrcoef`` different by round-off (~1e-16), and their Pearson correlation was then that
#: round-off's, any value in [-1, 1]
_FLAT_CORRELATIONS = 1e-10


def _pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two float64 vectors of correlations (``torch.corrcoef``);
    ``nan`` when either is constant, up to round-off (a spread of at most 1e-10)."""
    if any(float(v.max() - v.min()) <= _FLAT_CORRELATIONS for v in (a, b)):
        return math.nan
    return min(1.0, max(-1.0, float(torch.corrcoef(torch.stack([a, b]))[0, 1])))


def correlation_of_correlations(pred: Tensor, true: Tensor) -> float:
    r"""CellOT's "r2" (anchor 1.8; it is not squared, so we call it r): how well ``pred``
    reproduces the correlation structure of ``true``.

    With :math:`C^{pred}, C^{true}` the ``[d, d]`` Pearson correlation matrices of the features
    (columns) of ``pred [n, d]`` and ``true [m, d]``, and :math:`u(C) = (C_{jk})_{j<k}` the
    :math:`d(d-1)/2` strictly upper-triangular entries,
    :math:`r = \operatorname{corr}(u(C^{pred}), u(C^{true}))` (Pearson), in :math:`[-1, 1]`.
    It reads only correlations, so it is invariant to per-feature affine maps
    :math:`x_j \mapsto a_j x_j + b_j` with :math:`a_j > 0` of either population (and blind to
    means and scales: report it beside a distance). Computed in float64 on every point (no
    subsampling; the populations may differ in size).

    Returns ``nan`` when it is undefined: a constant feature (zero variance, ``max == min``)
    in either population has no correlations, and if all of one population's
    upper-triangular correlations are equal (to round-off, 1e-10: features that are affine
    copies of one another, or two points), the second correlation divides by zero (as
    :func:`spearman` returns ``nan`` for a constant input; a mean over populations then shows
    ``nan`` rather than hiding the case). Both populations need ``n, m >= 2``
    points and ``d >= 3`` features (``d = 2`` has one off-diagonal entry and no correlation;
    the anchor disables r for the 2-d letters). ``TypeError``/``ValueError`` naming ``pred``
    or ``true`` otherwise (a non-tensor, another shape, NaN/Inf points, differing ``d``).
    """
    pred, true = check_cloud_pair("pred", pred, "true", true)
    d = pred.shape[1]
    if d < 3:
        raise ValueError(
            f"pred/true: the correlation of correlations needs d >= 3 features (d(d-1)/2 >= 3 "
            f"pairwise correlations), received d = {d}"
        )
    for name, x in (("pred", pred), ("true", true)):
        if x.shape[0] < 2:
            raise ValueError(
                f"{name}: expected at least 2 points for feature correlations, received shape "
                f"{tuple(x.shape)}"
            )
    p, q = pred.detach().cpu().double(), true.detach().cpu().double()
    if bool((p.amax(0) == p.amin(0)).any() | (q.amax(0) == q.amin(0)).any()):
        return math.nan
    iu = torch.triu_indices(d, d, offset=1)
    cp, cq = torch.corrcoef(p.mT), torch.corrcoef(q.mT)  # [d, d] feature correlations
    return _pearson(cp[iu[0], iu[1]], cq[iu[0], iu[1]])


def gaussian_w2(m1: Tensor, s1: Tensor, m2: Tensor, s2: Tensor) -> Tensor:
    r"""Exact :math:`W_2` between Gaussians ``N(m1 [*, d], s1 [*, d, d])`` and ``N(m2, s2)``.

    Computed on the CPU in float64 like the other metrics here (in float32 the square root of
    the trace's round-off read ~3e-3 for two equal Gaussians); returned there. The Bures term
    is a difference of traces of the covariances' size, so a distance much smaller than
    :math:`\sqrt{\epsilon\,\operatorname{tr}\Sigma}` is lost to cancellation (1e-3 apart
    at covariances of 1e8 read 34 % low). ``s1``/``s2`` must be covariances up to their
    dtype's round-off (symmetric, no eigenvalue below ``-sqrt(eps)`` times their largest
    entry) and all four finite, with batch shapes that broadcast: ``ValueError`` otherwise.
    Returned without gradient (an evaluation metric: inputs that require grad are read
    detached, with a ``UserWarning``)."""
    warn_detached("gaussian_w2", m1=m1, s1=s1, m2=m2, s2=s2)
    for name, v in (("m1", m1), ("s1", s1), ("m2", m2), ("s2", s2)):
        if not isinstance(v, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, received {type(v).__name__}")
        if not v.is_floating_point():
            raise TypeError(f"{name}: expected floating values, received {v.dtype}")
        check_finite(name, v)  # NaN gave a NaN distance; a 'meta' tensor has no values
    # the round-off a covariance of each input's dtype may carry (asymmetry, eigenvalues < 0)
    slack = {k: math.sqrt(torch.finfo(v.dtype).eps) for k, v in (("s1", s1), ("s2", s2))}
    m1, s1, m2, s2 = (v.detach().cpu().double() for v in (m1, s1, m2, s2))  # MPS has no f64
    if m1.ndim < 1 or m1.shape[-1] < 1:
        raise ValueError(f"m1: expected a mean [*, d] with d >= 1, received {tuple(m1.shape)}")
    d = m1.shape[-1]
    for name, v, want in (("m2", m2, 1), ("s1", s1, 2), ("s2", s2, 2)):
        if v.ndim < want or v.shape[-want:] != (d,) * want:
            raise ValueError(
                f"{name}: expected shape [*, {', '.join(['d'] * want)}] with d = {d} (from "
                f"m1 {tuple(m1.shape)}), received {tuple(v.shape)}"
            )

    try:
        torch.broadcast_shapes(m1.shape[:-1], s1.shape[:-2], m2.shape[:-1], s2.shape[:-2])
    except RuntimeError as err:
        raise ValueError(
            f"m1/s1/m2/s2: expected batch shapes that broadcast, received means "
            f"{tuple(m1.shape)}, {tuple(m2.shape)} and covariances {tuple(s1.shape)}, "
            f"{tuple(s2.shape)}"
        ) from err
    for name, v in (("s1", s1), ("s2", s2)):
        _check_covariance(name, v, slack[name])

    def sqrtm(a: Tensor) -> Tensor:
        w, v = torch.linalg.eigh(0.5 * (a + a.mT))
        return v @ torch.diag_embed(w.clamp_min(0).sqrt()) @ v.mT

    r2 = sqrtm(s2)
    cross = sqrtm(r2 @ s1 @ r2)
    tr = torch.diagonal(s1 + s2 - 2 * cross, dim1=-2, dim2=-1).sum(-1)
    return ((m1 - m2).pow(2).sum(-1) + tr).clamp_min(0).sqrt()


def _check_covariance(name: str, s: Tensor, slack: float) -> None:
    """Refuse a matrix ``s [*, d, d]`` that is not a covariance beyond round-off (``slack``
    relative to its largest entry): an asymmetric one (a Cholesky factor, say) was
    symmetrised and one with a negative eigenvalue clamped, each giving a distance silently."""
    size = float(s.abs().amax()) if s.numel() else 0.0
    tol = slack * size
    asym = float((s - s.mT).abs().amax()) if s.numel() else 0.0
    if asym > tol:
        raise ValueError(
            f"{name}: expected a symmetric covariance [*, d, d], received a matrix whose "
            f"entries differ from its transpose's by up to {asym:.3g} (of largest entry "
            f"{size:.3g})"
        )
    low = float(torch.linalg.eigvalsh(0.5 * (s + s.mT)).amin()) if s.numel() else 0.0
    if low < -tol:
        raise ValueError(
            f"{name}: expected a positive semi-definite covariance, received one with "
            f"eigenvalue {low:.3g} (of largest entry {size:.3g})"
        )


def pooled_prediction(member_preds: Sequence[Tensor], n: int, seed: int = 0) -> Tensor:
    """Mixture of the members' populations ``[n_m, d]``, subsampled to ``n >= 1`` points
    (all of them, ``[sum n_m, d]``, when the members hold fewer)."""
    n = check_int("n", n, minimum=1)
    seed = check_seed("seed", seed)
    preds = check_populations("member_preds", member_preds, min_points=1, floating=False)
    return subsample_points(torch.cat(preds), n, seed)


def ensemble_spread(
    preds: Sequence[Tensor], *, max_points: int | None = None, seed: int = 0
) -> float:
    """Mean pairwise :math:`W_2` between ``M >= 2`` predicted populations ``[n, d]``.

    The members' rows are the images of the same source rows, so every member is subsampled to
    ``max_points`` with the same rows (``seed``): the spread is the members' disagreement only,
    and identical members have spread 0 whatever ``max_points`` (members subsampled with seeds
    of their own compared different source points: a subsampling floor added to every spread).
    The subsample is drawn from the rows in a canonical (lexicographic) order of the members'
    joint rows, so permuting the source rows (every member's rows alike) leaves the spread
    unchanged (drawn by position, it changed it).
    """
    max_points = _check_max_points("max_points", max_points)
    seed = check_seed("seed", seed)
    preds = check_populations("preds", preds, min_points=1, floating=False)
    if len(preds) < 2:
        raise ValueError(f"preds: expected at least 2 ensemble members, received {len(preds)}")
    if any(p.shape[0] != preds[0].shape[0] for p in preds):  # not images of the same rows
        raise ValueError(
            f"preds: expected members of one size (the images of the same source rows), "
            f"received {[p.shape[0] for p in preds]}"
        )
    pts = [p.detach().cpu().double() for p in preds]
    if max_points is not None and pts[0].shape[0] > max_points:  # rows as a set of M-tuples
        order = canonical_order(torch.cat(pts, -1))
        pts = [p[order] for p in pts]
    sub = [subsample_points(p, max_points, seed) for p in pts]
    _check_w_memory(sub[0].shape[0], sub[0].shape[0], max_points)
    vals = []
    for i in range(len(sub)):
        for j in range(i + 1, len(sub)):
            vals.append(float(wasserstein(sub[i], sub[j], p=2)))
    return float(np.mean(vals))


def sampling_noise_w2(
    preds: Sequence[Tensor],
    n: int,
    *,
    max_points: int | None = None,
    seed: int = 0,
    splits: int = 1,
) -> float:
    r"""Sampling-noise :math:`W_2` of a predicted population at sample size ``n``.

    ``preds``: ``M >= 1`` predictions ``[m, d]`` of one population whose rows are the images
    of the same ``m`` source points (ensemble members). The source rows are split at random
    into two halves :math:`S_1, S_2`; :math:`A` (:math:`B`) pools every member's points on
    :math:`S_1` (:math:`S_2`), and each is subsampled to
    :math:`k = \min(n, \text{max\_points}, |A|, |B|)` points. Returns :math:`W_2(A, B)`: two
    (nearly) independent ``k``-point samples of the predicted law, i.e. an estimate of its
    sampling floor, available without the true target. Each half holds the images of only
    ``m / 2`` distinct source rows: members that disagree spread them out, members that agree
    give near-copies, so the estimate lies between the floor at ``k`` and the (larger) floor at
    ``m / 2`` -- the latter with ``M = 1`` or identical members (about 1.3x the floor at
    ``k = m`` for a 2-D Gaussian); a spread :math:`\sqrt{\text{epi}^2 + \text{noise}^2}` weighs
    its noise part by up to that factor.
    ``splits > 1`` averages over that many random splits (a less noisy estimate).
    """
    splits = check_int("splits", splits, minimum=1)
    n = check_int("n", n)
    if n < 2:
        raise ValueError(f"n: expected a sample size >= 2, received {n!r}")
    max_points = _check_max_points("max_points", max_points)
    seed = check_seed("seed", seed)
    if isinstance(preds, (list, tuple)) and len(preds) < 1:  # others: named below (len() of
        # an iterator raised Python's unnamed TypeError)
        raise ValueError("preds: expected at least one predicted population")
    preds = check_populations("preds", preds, min_points=1, floating=False)
    m = preds[0].shape[0]
    if m < 4 or any(p.shape[0] != m for p in preds):
        raise ValueError(
            f"preds: expected populations of one size >= 4, received {[p.shape[0] for p in preds]}"
        )
    pts = [p.detach().cpu().double() for p in preds]
    half = len(preds) * (m // 2)  # the points of each half below, before subsampling
    k = min(n, half, max_points or half)
    _check_w_memory(k, k, max_points)
    gen = torch.Generator().manual_seed(seed)
    vals = []
    for r in range(splits):
        perm = torch.randperm(m, generator=gen)
        halves = [perm[: m // 2], perm[m // 2 : 2 * (m // 2)]]
        a, b = (torch.cat([p[h] for p in pts]) for h in halves)  # [M m/2, d]
        k = min(n, a.shape[0], b.shape[0], max_points or a.shape[0])
        a = subsample_points(a, k, offset_seed(seed, 2 * r + 1))
        b = subsample_points(b, k, offset_seed(seed, 2 * r + 2))
        vals.append(float(wasserstein(a, b, p=2)))
    return float(np.mean(vals))


def _real_values(name: str, value: Any) -> np.ndarray:
    """``value`` (numbers: a sequence, array or tensor) as a float64 array of its shape; a
    string is refused (``"123"`` read as the one number 123, ``"12"`` in a list as 12), and
    so are values that are no real numbers and a 'meta' tensor (no values), naming ``name``."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name}: expected a sequence of numbers, received {type(value).__name__}")
    if isinstance(value, Tensor) and value.device.type == "meta":
        raise ValueError(f"{name}: expected values, received a tensor on the 'meta' device")
    if isinstance(value, (list, tuple)) and any(isinstance(v, (str, bytes)) for v in value):
        raise TypeError(f"{name}: expected a sequence of numbers, received a string in it")
    return as_real_array(name, value)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation of paired values ``a [n]``, ``b [n]`` (``nan`` when fewer
    than 3 values or a constant input); ``a`` and ``b`` of one shape (pairs are read by
    position), finite numbers."""
    from scipy.stats import spearmanr

    a, b = _real_values("a", a), _real_values("b", b)
    if a.shape != b.shape:  # [[1, 2], [3, 4]] was paired with [1, 2, 3, 4] silently
        raise ValueError(
            f"a/b: expected equal lengths (values of one shape, paired by position), "
            f"received shapes {a.shape} and {b.shape}"
        )
    a, b = a.ravel(), b.ravel()
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a/b: expected finite values")
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def conformal_radius(scores: Sequence[float], alpha: float = 0.1) -> float:
    """Split-conformal quantile: the ``ceil((n+1)(1-alpha))``-th smallest score (``inf`` if > n)."""
    alpha = _check_alpha(alpha)
    s = np.sort(_real_values("scores", scores).ravel())
    n = len(s)
    if n == 0:
        raise ValueError("scores: expected at least one calibration score")
    if np.isnan(s).any():
        raise ValueError("scores: expected no NaN calibration scores")
    k = _conformal_rank(n, alpha)
    return float(s[k - 1]) if k is not None else math.inf


def _conformal_rank(n: int, alpha: float) -> int | None:
    r""":math:`k = \lceil (n+1)(1-\alpha)\rceil`, or ``None`` when :math:`k > n`: the core's
    :func:`~bayesphys.diagnostics.conformal_rank` at the exact level :math:`1 - \alpha` (in
    floats it rounds to 1 for ``alpha`` below about ``1e-16``, a valid level whose radius is
    infinite)."""
    return conformal_rank(n, 1 - Fraction(repr(alpha)))


def conformal_coverage(
    cal_scores: Sequence[float], test_scores: Sequence[float], alpha: float = 0.1
) -> tuple[float, float]:
    r"""``(radius, coverage)``: the fraction of test scores inside the calibrated radius.

    With fewer than :math:`\lceil (1-\alpha)/\alpha\rceil = \lceil 1/\alpha\rceil - 1`
    calibration scores (``alpha`` read as its shortest decimal, as :func:`conformal_radius`)
    the radius is infinite and the coverage 1 says nothing; a ``UserWarning`` says so, as it
    does when the radius is an infinite calibration score."""
    cal_scores = _real_values("cal_scores", cal_scores)
    q = conformal_radius(cal_scores, alpha)
    alpha = _check_alpha(alpha)
    t = _real_values("test_scores", test_scores)
    if t.size == 0 or np.isnan(t).any():
        raise ValueError("test_scores: expected at least one score and no NaN")
    if math.isinf(q):
        n, need = np.asarray(cal_scores).size, conformal_min_scores(1 - Fraction(repr(alpha)))
        why = (
            f"{n} calibration scores are too few for a finite radius at alpha={alpha} (needs "
            f"at least {need})"
            if n < need
            else f"the calibration score of rank {_conformal_rank(n, alpha)} of {n} is infinite"
        )
        warnings.warn(
            f"conformal_coverage: {why}; the radius is infinite and the coverage 1 is vacuous",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )
    return q, float(np.mean(t <= q))
