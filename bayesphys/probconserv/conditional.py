r"""Parameter-conditional (localized split-conformal) variance scale for the hybrid calibration.

Why: one scalar scale :math:`s` fitted on validation functions drawn from the whole training
distribution gives 90 % coverage *pooled* over the parameter :math:`\theta`, but a benchmark
row has a single :math:`\theta` (conditional coverage) and the Step-1 error depends on it
(e.g. the meta-GP is over-dispersed at one end of the training range and under-dispersed at
the other). Here the scale follows an estimate :math:`\hat\theta` of the parameter that is
available at test time.

1. **Inferred parameter** (:func:`fit_parameter_map`): :math:`\hat\theta(f)` is a ridge
   regression of the true parameter of the validation functions on the features
   :math:`\phi(f) = [1,\ \psi,\ \psi^{2},\ b,\ b^{2}]` (standardized, constant columns dropped),
   with :math:`\psi \in \mathbb R^r` the scores of the Step-1 mean :math:`\mu_f` on the top
   ``r`` principal components of the validation means and :math:`b` the known mass
   :math:`b(t)` of each time slice (the constraint right-hand side, a test-time input).
   It is mapped to :math:`u = \operatorname{clip}(2(\hat\theta - \theta_{lo}) /
   (\theta_{hi} - \theta_{lo}) - 1,\ -1,\ 1)` (no extrapolation outside the training range).
2. **Localized split-conformal scale** (:func:`local_coverage_scale`): on ``M`` *calibration*
   functions (not those that built the covariance; ``ProbConserv.calibrate`` draws their
   parameters, like those of the validation functions, from the training range widened by
   ``range_margin`` of its length at each end, so that a function at an end has calibration
   functions on both sides) with z-scores
   :math:`z_{mi} = (u_{mi} - \mu_{mi}) / \sigma_{mi}` under the final covariance (scale 1),
   kernel weights :math:`w_m(u) = \exp(-\tfrac12 (u_m - u)^2 / h^2)` and

   .. math::
       q(u) = \min\Big\{q : \sum_m w_m(u)\,\tfrac1N\textstyle\sum_i
       \mathbf 1\{|z_{mi}| \le q\} \ge 0.9\,\sum_m w_m(u)\Big\},\qquad
       s(u) = (q(u) / z_{0.95})^2,

   i.e. the weighted 90 % quantile of :math:`|z|`: the *expected coverage of a function near*
   :math:`u` is 90 % (localized conformal prediction, Guan 2023). ``h = inf`` gives equal
   weights: the pooled scale (the previous method), up to the quantile rule: :math:`q` is an
   order statistic of the pooled :math:`|z|` (the smallest that reaches the level), where
   :func:`~bayesphys.probconserv.calibration.coverage_scale` interpolates between two.
3. **Bandwidth** (:func:`choose_bandwidth`): 2-fold on the calibration functions, the ``h``
   whose held-out coverage, averaged in equal-width bins of the *true* parameter over the
   training range (functions beyond its ends in the end bins), is closest to 0.9
   (per fold the root-mean-square over the bins, :func:`binned_coverage_error`, then the
   root-mean-square of the two folds' errors; ties go to the larger ``h``).

Shapes: Step-1 means ``[B, nt, N]``, masses ``[B, nt]``, z-scores ``[M, nt, N]``,
scales ``[B, nt]``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_int, check_range, check_real, did_you_mean
from ._calibration_state import check_state

__all__ = [
    "fit_local_scale",
    "ParameterMap",
    "fit_parameter_map",
    "local_coverage_scale",
    "binned_coverage_error",
    "choose_bandwidth",
    "LocalScale",
]

_F64 = torch.float64
Z90 = 1.6448536269514722


def _check_bandwidth(name: str, h) -> float:
    """A bandwidth ``> 0`` (``inf``: equal weights, the pooled scale)."""
    if isinstance(h, bool) or not isinstance(h, numbers.Real):
        raise TypeError(f"{name}: expected a number > 0 (or inf), received {h!r}")
    if not float(h) > 0:
        raise ValueError(f"{name}: expected > 0 (or inf), received {h}")
    return float(h)


def _check(name: str, x: Tensor, ndim: int) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a Tensor, received {type(x).__name__}")
    if x.is_complex():  # the float64 cast kept the real part without a word
        raise TypeError(f"{name}: expected real values, received dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, received shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite values")
    return x.to(_F64)


def _check_lengths(absz: Tensor, **per_function: Tensor) -> None:
    """Refuse a per-function tensor whose shape is not ``[M]``, ``M = absz.shape[0]`` (a
    shorter one failed deep inside with an IndexError, a broadcastable one was misread)."""
    for name, t in per_function.items():
        if not isinstance(t, Tensor) or tuple(t.shape) != (absz.shape[0],):
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(
                f"{name}: expected shape ({absz.shape[0]},) (one value per calibration "
                f"function of absz), received {shape}"
            )


@dataclass
class ParameterMap:
    r"""Ridge map :math:`\hat\theta = \phi(\mu, b)^\top w` (see the module docstring).

    Attributes
    ----------
    center
        ``[D]`` mean of the flattened validation means (``D = nt N``).
    components
        ``[D, r]`` principal directions :math:`V`; the scores are
        :math:`\psi = (\mu - c)^\top V` ``[B, r]`` (:math:`c` = ``center``).
    feat_mean, feat_std
        ``[P]`` feature standardisation of
        :math:`(\psi, \psi^2, b, b^2)` (``P = 2 r + 2 nt``): the mean and the sample sd
        (:math:`1/(V-1)`) over the validation functions; ``inf`` sd for a dropped constant
        column.
    coef
        ``[P + 1]`` ridge coefficients :math:`w` (intercept first).
    lo, hi
        the training range of :math:`\theta` (:meth:`unit` maps it to ``[-1, 1]``).
    """

    center: Tensor  # [D] mean of the flattened validation means
    components: Tensor  # [D, r] principal directions
    feat_mean: Tensor  # [P] feature standardization
    feat_std: Tensor  # [P] (inf for a dropped constant column)
    coef: Tensor  # [P + 1] (intercept first)
    lo: float
    hi: float

    def features(self, mean: Tensor, mass: Tensor) -> Tensor:
        """``mean [B, nt, N]``, ``mass [B, nt]`` -> standardized features ``[B, P]``."""
        mean = _check("mean", mean, 3)
        mass = _check("mass", mass, 2)
        if mean.shape[0] != mass.shape[0] or mean.shape[1] != mass.shape[1]:
            raise ValueError(
                f"mass: expected shape {tuple(mean.shape[:2])}, received {tuple(mass.shape)}"
            )
        if mean[0].numel() != self.center.numel():
            raise ValueError(
                f"mean: expected {self.center.numel()} values per function (the calibration "
                f"grid), received {mean[0].numel()}"
            )
        psi = (mean.flatten(1) - self.center.to(mean)) @ self.components.to(mean)
        f = torch.cat([psi, psi.pow(2), mass, mass.pow(2)], -1)
        return (f - self.feat_mean.to(f)) / self.feat_std.to(f)

    def __call__(self, mean: Tensor, mass: Tensor) -> Tensor:
        r""":math:`\hat\theta` ``[B]``."""
        f = self.features(mean, mass)
        return self.coef[0].to(f) + f @ self.coef[1:].to(f)

    def unit(self, mean: Tensor, mass: Tensor) -> Tensor:
        r""":math:`u \in [-1, 1]` ``[B]``: :math:`\hat\theta` rescaled to the training range."""
        return to_unit(self(mean, mass), self.lo, self.hi)


def to_unit(theta: Tensor, lo: float, hi: float) -> Tensor:
    """Map parameters to ``[-1, 1]`` over the training range ``[lo, hi]`` (clipped)."""
    return (2.0 * (theta.to(_F64) - lo) / (hi - lo) - 1.0).clamp(-1.0, 1.0)


def fit_parameter_map(
    mean: Tensor,
    mass: Tensor,
    theta: Tensor,
    train_range: tuple[float, float],
    rank: int = 3,
    ridge: float = 1e-3,
) -> ParameterMap:
    r"""Fit :math:`\hat\theta(\mu, b)` on ``V`` validation functions.

    ``mean [V, nt, N]`` Step-1 means, ``mass [V, nt]`` their masses :math:`b(t)`, ``theta [V]``
    their true parameters; ridge :math:`\min_w \lVert \Phi w - \theta\rVert^2 + \lambda V
    \lVert w_{1:}\rVert^2` on standardized features (each centred and divided by its sample
    sd, :math:`1/(V-1)`, over the ``V`` functions; intercept unpenalized). ``ridge = 0``
    is its limit, the minimum-norm least-squares fit (a dropped constant column, e.g. the
    zero mass of the periodic diffusion problem, gets the coefficient 0).
    """
    mean = _check("mean", mean, 3)
    mass = _check("mass", mass, 2)
    theta = _check("theta", theta, 1)
    v = mean.shape[0]
    if theta.shape[0] != v or mass.shape[0] != v:
        raise ValueError(
            f"theta, mass: expected {v} functions, received {theta.shape[0]}, {mass.shape[0]}"
        )
    lo, hi = check_range("train_range", train_range)
    rank = check_int("rank", rank, minimum=1)
    ridge = check_real("ridge", ridge, minimum=0.0)
    if v < 2 * rank + 4:
        raise ValueError(f"rank: expected 1 <= rank and >= 2 rank + 4 functions, got {rank}, {v}")
    x = mean.flatten(1)
    center = x.mean(0)
    _, _, vh = torch.linalg.svd(x - center, full_matrices=False)
    comps = vh[:rank].T.contiguous()
    pm = ParameterMap(
        center,
        comps,
        torch.zeros(2 * rank + 2 * mass.shape[1], dtype=_F64, device=x.device),
        torch.ones(2 * rank + 2 * mass.shape[1], dtype=_F64, device=x.device),
        torch.zeros(2 * rank + 2 * mass.shape[1] + 1, dtype=_F64, device=x.device),
        lo,
        hi,
    )
    f = pm.features(mean, mass)  # unstandardized (mean 0, std 1 placeholders)
    mu, sd = f.mean(0), f.std(0)
    sd = torch.where(sd > 1e-12 * (1 + mu.abs()), sd, torch.full_like(sd, math.inf))
    pm.feat_mean, pm.feat_std = mu, sd
    f = pm.features(mean, mass)
    if ridge == 0:  # F^T F is singular with a dropped (all-zero) column: the solve failed
        w = torch.linalg.pinv(f) @ (theta - theta.mean())
    else:
        a = f.T @ f + ridge * v * torch.eye(f.shape[1], dtype=_F64, device=f.device)
        w = torch.linalg.solve(a, f.T @ (theta - theta.mean()))
    pm.coef = torch.cat([theta.mean()[None], w])
    return pm


def local_coverage_scale(
    absz: Tensor, u: Tensor, query: Tensor, bandwidth: float, level: float = 0.9
) -> Tensor:
    r"""Localized conformal variance scale :math:`s(u)` (module docstring, step 2).

    ``absz [M, nt, N]`` calibration :math:`|z|` (scale 1), ``u [M]`` their inferred parameters
    (unit range), ``query [B]`` -> ``[B, nt]``, one scale per query and time slice (each
    slice's :math:`|z|` of the ``M`` functions apart). ``bandwidth = inf``: the pooled scale,
    whose :math:`q` is the :math:`\lceil \gamma M N\rceil`-th smallest :math:`|z|` of the
    slice (no interpolation between order statistics, unlike
    :func:`~bayesphys.probconserv.calibration.coverage_scale`).

    For a ``level`` :math:`\gamma` other than 0.9, :math:`q(u)` is the weighted
    :math:`\gamma` quantile of :math:`|z|` and :math:`s(u) = (q(u) / z_{(1+\gamma)/2})^2`, so
    that the central :math:`\gamma` intervals cover :math:`\gamma` near :math:`u`.
    """
    absz = _check("absz", absz, 3).abs()
    dev = absz.device  # every tensor made below is made there (a CUDA absz met CPU weights)
    u = _check("u", u, 1).to(dev)
    query = _check("query", query, 1).to(dev)
    if u.shape[0] != absz.shape[0]:
        raise ValueError(f"u: expected {absz.shape[0]} values, received {u.shape[0]}")
    bandwidth = _check_bandwidth("bandwidth", bandwidth)
    level = check_real("level", level)
    if not 0 < level < 1:
        raise ValueError(f"level: expected in (0, 1), received {level}")
    m, nt, n = absz.shape
    if math.isinf(bandwidth):
        w = torch.ones(query.shape[0], m, dtype=_F64, device=dev)
    else:
        w = torch.exp(-0.5 * ((query[:, None] - u[None, :]) / bandwidth) ** 2)  # [B, M]
        w = w / w.sum(-1, keepdim=True).clamp_min(1e-300)
        fallback = w.sum(-1) == 0
        if bool(fallback.any()):
            w[fallback] = 1.0
    w = w / w.sum(-1, keepdim=True)
    # smallest pooled |z| value v with sum_m w_m F_m(v) >= level, F_m the empirical CDF of
    # function m's |z|: binary search over the sorted pooled values (exact, O(B M log N) memory)
    per_fn = absz.permute(1, 0, 2).sort(-1).values.contiguous()  # [nt, M, N]
    pooled = per_fn.reshape(nt, m * n).sort(-1).values  # [nt, M N]
    out = torch.empty(query.shape[0], nt, dtype=_F64, device=dev)
    for j in range(nt):
        lo = torch.zeros(query.shape[0], dtype=torch.long, device=dev)
        hi = torch.full((query.shape[0],), m * n - 1, dtype=torch.long, device=dev)
        while bool((lo < hi).any()):
            mid = (lo + hi) // 2
            v = pooled[j, mid]  # [B]
            cnt = torch.searchsorted(per_fn[j], v.expand(m, -1).contiguous(), right=True)
            cov = (w * cnt.T.to(_F64)).sum(-1) / n  # [B]
            ok = cov >= level - 1e-12
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid + 1)
        out[:, j] = pooled[j, lo]
    # the central level interval is mu +- z_{(1+level)/2} sigma (dividing by z_{0.95} for
    # every level made the 90 % interval, not the level one, cover level); Z90 itself at 0.9
    zq = (
        Z90
        if level == 0.9
        else float(torch.special.ndtri(torch.tensor((1 + level) / 2, dtype=_F64)))
    )
    return (out / zq).pow(2).clamp_min(1e-300)


def binned_coverage_error(
    absz: Tensor, scale: Tensor, theta: Tensor, lo: float, hi: float, bins: int = 5
) -> float:
    r"""Root-mean-square over ``bins`` equal-width bins of the true parameter ``theta [M]`` of
    (mean coverage of the central 90 % intervals in the bin :math:`- 0.9`).

    ``absz [M, nt, N]``, ``scale [M, nt]``; empty bins are skipped. The bins split
    ``[lo, hi]``; a ``theta`` outside it (a calibration function drawn from the range widened
    by ``range_margin``) counts in the end bin on its side (``theta`` is clipped to
    ``[lo, hi]``), and one on an inner edge in the bin below it.
    """
    bins = check_int("bins", bins, minimum=1)
    lo, hi = check_real("lo", lo), check_real("hi", hi)
    if not hi > lo:
        raise ValueError(f"lo, hi: expected lo < hi, received ({lo}, {hi})")
    _check_lengths(absz, theta=theta)
    inside = (absz.abs() <= Z90 * scale.sqrt()[..., None]).to(_F64).mean((-1, -2))  # [M]
    edges = torch.linspace(lo, hi, bins + 1, dtype=_F64, device=inside.device)
    idx = torch.bucketize(theta.to(inside.device, _F64).clamp(lo, hi), edges[1:-1])
    dev = [float(inside[idx == b].mean() - 0.9) for b in range(bins) if bool((idx == b).any())]
    return math.sqrt(sum(d * d for d in dev) / max(len(dev), 1))


def choose_bandwidth(
    absz: Tensor,
    u: Tensor,
    theta: Tensor,
    lo: float,
    hi: float,
    bandwidths: Sequence[float] = (0.1, 0.2, 0.4, math.inf),
    bins: int = 5,
) -> tuple[float, dict[float, float]]:
    """2-fold choice of the bandwidth (module docstring, step 3) -> ``(h, {h: error})``."""
    bandwidths = tuple(_check_bandwidth("bandwidths", h) for h in bandwidths)
    if not bandwidths:
        raise ValueError("bandwidths: expected at least one bandwidth, received none")
    bins = check_int("bins", bins, minimum=1)
    _check_lengths(absz, u=u, theta=theta)
    m = absz.shape[0]
    if m < 4:
        raise ValueError(f"calibration set: expected at least 4 functions, received {m}")
    half = m // 2
    folds = [
        (torch.arange(half), torch.arange(half, m)),
        (torch.arange(half, m), torch.arange(half)),
    ]
    cv = {}
    for h in bandwidths:
        err = 0.0
        for fit, ev in folds:
            s = local_coverage_scale(absz[fit], u[fit], u[ev], h)
            err += binned_coverage_error(absz[ev], s, theta[ev], lo, hi, bins) ** 2 / 2
        cv[float(h)] = math.sqrt(err)
    best = min(cv.values())
    h = max(k for k, e in cv.items() if e <= best + 1e-12)
    return h, cv


@dataclass
class LocalScale:
    r"""Fitted parameter-conditional scales, one per stage (``"prior"``, ``"post"``).

    Attributes
    ----------
    pmap
        the :class:`ParameterMap` :math:`\hat\theta(\mu, b)`.
    u
        ``[M]`` inferred parameters of the ``M`` calibration functions (unit range).
    absz
        stage -> ``[M, nt, N]`` absolute z-scores under the final covariance (scale 1).
    bandwidth
        stage -> the kernel bandwidth ``h`` in the unit range.
    cv
        stage -> ``{h: 2-fold binned coverage error}``.
    """

    pmap: ParameterMap
    u: Tensor  # [M] inferred parameters of the calibration functions (unit range)
    absz: dict[str, Tensor]  # stage -> [M, nt, N] |z| under the final covariance (scale 1)
    bandwidth: dict[str, float]  # stage -> h
    cv: dict[str, dict[float, float]]  # stage -> {h: 2-fold binned coverage error}

    def scale(self, mean: Tensor, mass: Tensor, stage: str) -> Tensor:
        """Variance scale ``[B, nt]`` for Step-1 means ``[B, nt, N]`` and masses ``[B, nt]``
        (tensors, as :class:`ParameterMap` takes them: anything else is a ``TypeError``
        naming it, where a list failed with an ``AttributeError``)."""
        for name, value in (("mean", mean), ("mass", mass)):
            if not isinstance(value, Tensor):
                raise TypeError(f"{name}: expected a Tensor, received {type(value).__name__}")
        if stage not in self.absz:
            raise ValueError(
                f"stage: expected one of {sorted(self.absz)}, received "
                f"{stage!r}{did_you_mean(stage, sorted(self.absz))}"
            )
        q = self.pmap.unit(mean.detach().cpu(), mass.detach().cpu())  # fitted on the CPU
        return local_coverage_scale(self.absz[stage], self.u, q, self.bandwidth[stage])

    def state(self) -> dict:
        """The parameter map, calibration points, z-scores and bandwidths (saved with the model)."""
        return {
            "pmap": dict(vars(self.pmap)),
            "u": self.u,
            "absz": self.absz,
            "bandwidth": self.bandwidth,
            "cv": self.cv,
        }

    @classmethod
    def from_state(cls, d: dict, *, name: str = "d") -> LocalScale:
        """Rebuild from :meth:`state`: ``d`` holds ``pmap`` (a dict of the
        :class:`ParameterMap` fields: tensors ``center``, ``components``, ``feat_mean``,
        ``feat_std``, ``coef`` and numbers ``lo``, ``hi``), the tensor ``u`` and the dicts
        ``absz``, ``bandwidth``, ``cv``, and no other key. A non-dict is a ``TypeError``,
        missing or unknown keys a ``ValueError`` naming them, a value of the wrong type a
        ``TypeError`` naming ``d['key']`` (``name``: how the caller calls ``d``); they
        failed with a bare ``KeyError`` or the constructor's ``TypeError``."""
        d = check_state(name, d, cls, _LOCAL_KINDS)
        pmap = check_state(f"{name}['pmap']", d["pmap"], ParameterMap, _PMAP_KINDS)
        return cls(ParameterMap(**pmap), d["u"], d["absz"], d["bandwidth"], d["cv"])


#: the kind of value of each LocalScale and ParameterMap field (``check_state``)
_LOCAL_KINDS = {"pmap": "dict", "u": "tensor", "absz": "dict", "bandwidth": "dict", "cv": "dict"}
_PMAP_KINDS = {
    **dict.fromkeys(("center", "components", "feat_mean", "feat_std", "coef"), "tensor"),
    "lo": "number",
    "hi": "number",
}


def fit_local_scale(
    val_mean: Tensor,
    val_mass: Tensor,
    val_theta: Tensor,
    cal_mean: Tensor,
    cal_mass: Tensor,
    cal_theta: Tensor,
    z: dict[str, Tensor],
    train_range: tuple[float, float],
    bandwidths: Sequence[float] = (0.1, 0.2, 0.4, math.inf),
    rank: int = 3,
) -> LocalScale:
    r"""Parameter-conditional variance scales (:mod:`~bayesphys.probconserv.conditional`).

    The map :math:`\hat\theta(\mu, b)` is fitted on the ``V`` validation functions that built
    the hybrid covariance (``val_mean [V, nt, N]``, ``val_mass [V, nt]``, ``val_theta [V]``);
    the localized conformal scales on ``M`` *other* calibration functions (``cal_mean
    [M, nt, N]``, ``cal_mass [M, nt]``, ``cal_theta [M]``) with z-scores ``z[stage]
    [M, nt, N]`` under the final hybrid covariance at scale 1 (split conformal: the functions
    that give the error root never score it). The bandwidth per stage by
    :func:`~bayesphys.probconserv.conditional.choose_bandwidth` (true parameters of the
    calibration functions, equal-width bins of ``train_range``).

    Every tensor argument must be a real, finite tensor of the shape above (``TypeError`` or
    ``ValueError`` naming it otherwise), ``train_range`` a pair ``(lo, hi)`` with ``lo < hi``.
    """
    if not isinstance(z, dict):
        raise TypeError(f"z: expected a dict {{stage: z-scores}}, received {type(z).__name__}")
    if not z:
        raise ValueError("z: expected at least one stage ('prior', 'post')")
    # each argument checked under its own name: an array or list failed with an AttributeError
    # ('detach'), a number train_range with "'float' object is not subscriptable", a NaN
    # cal_theta was binned into the last bin without a word, and the other mistakes were named
    # by the helpers' arguments (theta, mass, absz), not the caller's
    named = {
        "val_mean": (val_mean, 3),
        "val_mass": (val_mass, 2),
        "val_theta": (val_theta, 1),
        "cal_mean": (cal_mean, 3),
        "cal_mass": (cal_mass, 2),
        "cal_theta": (cal_theta, 1),
    }
    val_mean, val_mass, val_theta, cal_mean, cal_mass, cal_theta = (
        _check(name, t, ndim).detach().cpu() for name, (t, ndim) in named.items()
    )
    for prefix, mean, mass, theta in (
        ("val", val_mean, val_mass, val_theta),
        ("cal", cal_mean, cal_mass, cal_theta),
    ):
        if tuple(mass.shape) != tuple(mean.shape[:2]):
            raise ValueError(
                f"{prefix}_mass: expected shape {tuple(mean.shape[:2])} (functions x slices of "
                f"{prefix}_mean), received {tuple(mass.shape)}"
            )
        if tuple(theta.shape) != tuple(mean.shape[:1]):
            raise ValueError(
                f"{prefix}_theta: expected shape {tuple(mean.shape[:1])} (one parameter per "
                f"function of {prefix}_mean), received {tuple(theta.shape)}"
            )
    if cal_mean.shape[1:] != val_mean.shape[1:]:
        raise ValueError(
            f"cal_mean: expected shape [M, {val_mean.shape[1]}, {val_mean.shape[2]}] (the grid "
            f"of val_mean), received {tuple(cal_mean.shape)}"
        )
    z = {k: _check(f"z[{k!r}]", v, 3).detach().cpu() for k, v in z.items()}
    lo, hi = check_range("train_range", train_range)
    pmap = fit_parameter_map(val_mean, val_mass, val_theta, (lo, hi), rank=rank)
    u = pmap.unit(cal_mean, cal_mass)
    absz, bw, cv = {}, {}, {}
    for stage, zs in z.items():
        if zs.shape != cal_mean.shape:
            raise ValueError(
                f"z[{stage!r}]: expected shape {tuple(cal_mean.shape)}, received {tuple(zs.shape)}"
            )
        absz[stage] = zs.abs().to(_F64)
        bw[stage], cv[stage] = choose_bandwidth(absz[stage], u, cal_theta, lo, hi, bandwidths)
    return LocalScale(pmap, u, absz, bw, cv)
