r"""Validation-fitted Step-1 covariance for the Step-2 update (the "hybrid" calibration).

Why: in the limit :math:`\sigma_G \to 0` the update moves the mean by
:math:`-\Sigma g\,(g^\top\Sigma g)^{-1}(g^\top\mu - b)`: the mass defect is spread in proportion
to :math:`\Sigma g`. With the ANP's own covariance the largest share goes where the predicted
variance is largest. On PME ``m = 6`` (front at ``x = t``, :math:`u \propto (t-x)^{1/6}` with an
infinite slope) that is the grid point on the front, whose Step-1 error is ``+0.25`` while the
mass defect is negative: the update pushes it the wrong way, and this one point turns the
``m = 6`` MSE from better to worse (docs/probconserv_notes.md, "Why PME m = 6 got worse").

Fix: as the background-error covariance of variational data assimilation is estimated from the
statistics of forecast errors (Parrish & Derber 1992, "NMC method") and blended with the
flow-dependent ensemble covariance (hybrid covariance, Hamill & Snyder 2000), we blend the
Step-1 covariance with the empirical covariance of the Step-1 errors on ``V`` held-out
validation functions drawn from the *training* distribution (never the test parameters):

.. math::
    E = [\mu_v - u_v]_{v=1}^V \in \mathbb R^{N\times V},\qquad
    \Sigma_{\rm err} = E E^\top / V, \qquad
    \Sigma_{\rm cal} = s\,\big(\beta\,a\,\Sigma_{\rm model} + (1-\beta)\,\Sigma_{\rm err}\big),

with :math:`a = \overline{\lVert e\rVert^2} / \overline{\operatorname{tr}\Sigma_{\rm model}}`
(equal traces, so :math:`\beta` is a weight), :math:`\beta` chosen on a grid by the 2-fold
held-out MSE of the *updated* mean, and the scale :math:`s` by 2-fold held-out 90 % coverage
(:math:`s = (q_{0.9}|z| / 1.645)^2`), once for the Step-1 posterior (``prior_scale``) and once
for the updated one (``post_scale``; the limit update is scale-equivariant: :math:`\tilde\mu`
does not depend on :math:`s` and :math:`\tilde\Sigma \propto s`). :math:`\Sigma_{\rm err}`
learns e.g. that the front point's error is anti-correlated with the mass defect, so the
update no longer pushes it the wrong way; the equality :math:`G\tilde\mu = b` is unchanged.

Analogs (``neighbours``): instead of all ``V`` errors, :math:`\Sigma_{\rm err}(f)` may use
only the errors of the ``K`` validation functions whose Step-1 means are nearest to
:math:`\mu_f` (analog ensemble, Delle Monache et al. 2013), so the error structure follows
the unknown parameter; ``K`` (``0`` = all) is chosen with :math:`\beta` by the same 2-fold
held-out MSE. ``local_scale=True`` also takes the coverage scale from the analogs' held-out
z-scores (off by default: it did not improve coverage on the benchmark).

Parameter-conditional scale (``ProbConserv.calibrate(..., local_functions=M)``,
:func:`~bayesphys.probconserv.conditional.fit_local_scale`): the scalar scales assume one
error level over the whole training range; :mod:`~bayesphys.probconserv.conditional`
replaces them by a localized split-conformal scale :math:`s(\hat\theta)` in an inferred
parameter :math:`\hat\theta(\mu, b)`, fitted on ``M`` further
training-distribution functions scored under the final hybrid covariance.

Structure is kept: a low-rank-plus-diagonal / diagonal model covariance becomes
``LowRankRootAddedDiagLinearOperator`` with root :math:`[\sqrt{s\beta a}R,\ \sqrt{s(1-\beta)/V}E]`
(rank ``S + V``); a dense one stays dense. Shapes: ``err [nt, N, V]`` per time slice.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from linear_operator.operators import (
    DiagLinearOperator,
    LinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)
from torch import Tensor

from .._checks import check_int, check_real, did_you_mean
from .._device import ArrayLike, as_tensor
from .._quantile import quantile_of_all
from ..posterior import GaussianPosterior
from ._calibration_state import check_state
from ._update_checks import check_covariance
from .candidate_selection import SELECTIONS, check_selection, paired_se, select_candidate
from .conditional import LocalScale

__all__ = [
    "HybridCalibration",
    "hybrid_covariance",
    "fit_hybrid",
    "coverage_scale",
    "local_root",
]

_F64 = torch.float64
Z90 = 1.6448536269514722


def _to_cpu(value):
    """``value`` with its tensors (also inside a dict, e.g. ``val_z``) on the CPU."""
    if isinstance(value, Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value


@dataclass
class HybridCalibration:
    """Fitted hybrid calibration on one grid ``t [nt] x x [N]`` (see module docstring)."""

    t: Tensor  # [nt]
    x: Tensor  # [N]
    err_root: Tensor  # [nt, N, V] = E / sqrt(V)
    beta: float
    trace_ratio: float  # a
    prior_scale: float
    post_scale: float
    cv_mse: dict[tuple[int, float], float]  # (neighbours, beta) -> 2-fold held-out MSE
    neighbours: int = 0  # 0: all V validation errors; K > 0: the K nearest (analog) ones
    val_mean: Tensor | None = None  # [V, nt, N] Step-1 means of the validation functions

    val_z: dict[str, Tensor] | None = None  # out-of-fold z-scores [V, nt, N] per stage
    local: LocalScale | None = None  # parameter-conditional scales (fit_local_scale)
    # mass-residual discrepancy (``mass_check``), fitted with ``local`` and used only with it;
    # None: off
    mass_kappa: float | None = None
    mass_length: float | None = None  # its kernel length, in units of x
    mass_theta_sd: float | None = None  # sd of theta_hat - theta on the calibration functions
    mass_margin: float | None = None  # gate: theta_hat this far outside the range; None: off
    mass_floor: float = 0.0  # least discrepancy outside the gate, in units of kappa v / g'Kg
    selection: str = "min"  # the rule that picked (neighbours, beta); see fit_hybrid
    # (neighbours, beta) -> paired standard error of its held-out MSE difference to the best
    cv_se: dict[tuple[int, float], float] | None = None

    def _near(self, mean: Tensor) -> Tensor:
        d = torch.cdist(mean.flatten(1).to(_F64), self.val_mean.to(mean.device).flatten(1))
        return d.topk(self.neighbours, dim=-1, largest=False).indices  # [B, K]

    def scale_for(self, mean: Tensor, stage: str, mass: Tensor | None = None) -> float | Tensor:
        """Variance scale: global, or per function and slice ``[B, nt]``: parameter-conditional
        (``self.local``, needs the masses ``[B, nt]``; :mod:`~bayesphys.probconserv.conditional`)
        or (analog) fitted on the out-of-fold z-scores of the ``K`` nearest validation
        functions."""
        if stage not in ("prior", "post"):
            raise ValueError(
                f"stage: expected 'prior' or 'post', received {stage!r}"
                f"{did_you_mean(stage, ('prior', 'post'))}"
            )
        if self.local is not None:
            if mass is None:
                raise ValueError("mass: the parameter-conditional scale needs the masses [B, nt]")
            return self.local.scale(mean, mass, stage).to(mean)
        if not self.neighbours or self.val_z is None:
            return self.prior_scale if stage == "prior" else self.post_scale
        z = self.val_z[stage].to(mean)[self._near(mean)]  # [B, K, nt, N]
        q = torch.quantile(z.abs().transpose(1, 2).flatten(2), 0.9, dim=-1)  # [B, nt]
        return (q / Z90) ** 2

    def root_for(self, mean: Tensor) -> Tensor:
        """Error root for Step-1 means ``[B, nt, N]``: ``[nt, N, V]`` or ``[B, nt, N, K]``."""
        if not self.neighbours:
            return self.err_root.to(mean)
        v = self.err_root.shape[-1]
        err = self.err_root.to(mean).permute(2, 0, 1) * math.sqrt(v)  # [V, nt, N]
        return local_root(err, self.val_mean.to(mean), mean, self.neighbours)

    def matches(self, t: ArrayLike, x: ArrayLike) -> bool:
        """Whether the grid ``t [nt] x x [N]`` is the calibration grid (same shapes, values
        equal to within ``1e-12``). ``t`` and ``x`` may be tensors, arrays or lists (as in
        :func:`fit_hybrid`; lists failed with an ``AttributeError``), real."""
        t = as_tensor("t", t, real=True, finite=False)
        x = as_tensor("x", x, real=True, finite=False)
        return (
            t.shape == self.t.shape
            and x.shape == self.x.shape
            and bool(torch.allclose(t.to(self.t), self.t, rtol=0, atol=1e-12))
            and bool(torch.allclose(x.to(self.x), self.x, rtol=0, atol=1e-12))
        )

    def state(self) -> dict:
        """The fields as a dict, tensors on the CPU (a checkpoint loads without the device)."""
        d = {k: _to_cpu(getattr(self, k)) for k in self.__dataclass_fields__}
        d["local"] = None if self.local is None else self.local.state()
        return d

    @classmethod
    def from_state(cls, d: dict) -> HybridCalibration:
        """Rebuild from :meth:`state` (a checkpoint's calibration).

        ``d`` holds every field without a default (``t``, ``x``, ``err_root``, ``beta``,
        ``trace_ratio``, ``prior_scale``, ``post_scale``, ``cv_mse``) and no key that is not a
        field (the later fields may be absent: older checkpoints); a non-dict is a
        ``TypeError``, missing or unknown keys a ``ValueError`` naming them, a value of the
        wrong type (e.g. a list ``t``, a string ``beta``) a ``TypeError`` naming
        ``d['key']``, and ``local`` is checked as :meth:`LocalScale.from_state` checks its
        state (they failed with the constructor's ``TypeError`` or a ``KeyError``)."""
        d = check_state("d", d, cls, _STATE_KINDS, _STATE_NULLABLE)
        if "selection" in d and d["selection"] not in SELECTIONS:
            raise ValueError(
                f"d['selection']: expected one of {SELECTIONS}, received {d['selection']!r}"
            )
        local = d.get("local")
        if isinstance(local, Mapping):
            d["local"] = LocalScale.from_state(local, name="d['local']")
        elif local is not None and not isinstance(local, LocalScale):
            raise TypeError(
                "d['local']: expected a dict (a saved LocalScale) or None, received "
                f"{type(local).__name__}"
            )
        return cls(**d)


#: the kind of value of each HybridCalibration field (``check_state``); ``local`` apart
_STATE_KINDS = {
    **dict.fromkeys(("t", "x", "err_root", "val_mean"), "tensor"),
    **dict.fromkeys(
        (
            "beta",
            "trace_ratio",
            "prior_scale",
            "post_scale",
            "mass_kappa",
            "mass_length",
            "mass_theta_sd",
            "mass_margin",
            "mass_floor",
        ),
        "number",
    ),
    "neighbours": "int",
    **dict.fromkeys(("cv_mse", "val_z", "cv_se"), "dict"),
    "selection": "str",
}
_STATE_NULLABLE = (
    "val_mean",
    "val_z",
    "cv_se",
    "mass_kappa",
    "mass_length",
    "mass_theta_sd",
    "mass_margin",
)


def hybrid_covariance(
    cov: LinearOperator | Tensor, err_root: Tensor, beta: float, a: float, scale: float | Tensor
) -> LinearOperator | Tensor:
    r""":math:`s(\beta a\Sigma + (1-\beta)E E^\top)` for ``cov [*, nt, N, N]``.

    ``err_root`` ``[nt, N, V]`` (or per function ``[*, nt, N, K]``); ``scale`` a float or a
    tensor ``[*, nt]`` (one scale per function and slice). Diagonal or low-rank-plus-diagonal
    ``cov`` gives a ``LowRankRootAddedDiagLinearOperator`` (a ``DiagLinearOperator`` for a
    diagonal ``cov`` with ``beta = 1``); anything else a dense tensor in ``cov``'s dtype.
    """
    check_covariance("cov", cov)
    beta = check_real("beta", beta, minimum=0.0, maximum=1.0)
    a = check_real("a", a, minimum=0.0)
    if isinstance(scale, Tensor):
        # a complex scale failed in torch ("lt"), a bool one was read as 0/1, and one of
        # another shape failed in torch's broadcast
        if scale.is_complex() or scale.dtype == torch.bool:
            raise TypeError(f"scale: expected real values, received dtype {scale.dtype}")
        _check_batch(
            "scale",
            scale.shape,
            cov.shape[:-2],
            f"a number or a tensor [*, nt] that broadcasts with the covariance's batch "
            f"{tuple(cov.shape[:-2])}",
        )
        if bool((~torch.isfinite(scale) | (scale < 0)).any()):
            raise ValueError("scale: expected finite values >= 0")
    else:
        scale = check_real("scale", scale, minimum=0.0)
    err_root = as_tensor("err_root", err_root, real=True)
    if err_root.ndim < 3 or err_root.shape[-2] != cov.shape[-1]:
        raise ValueError(
            f"err_root: expected shape [nt, {cov.shape[-1]}, V] or [*, nt, {cov.shape[-1]}, K] "
            f"(the covariance's size), received {tuple(err_root.shape)}"
        )
    # another number of slices failed in torch's broadcast, naming no argument
    _check_batch(
        "err_root",
        err_root.shape,
        cov.shape[:-2],
        f"shape [nt, {cov.shape[-1]}, V] or [*, nt, {cov.shape[-1]}, K] with batch dims that "
        f"broadcast with the covariance's {tuple(cov.shape[:-2])}",
        trailing=2,
    )
    dtype = cov.dtype
    w = torch.as_tensor(scale, dtype=dtype, device=err_root.device)
    w_model, w_err = (w * beta * a)[..., None, None], (w * (1.0 - beta))[..., None, None]
    if isinstance(cov, DiagLinearOperator | LowRankRootAddedDiagLinearOperator):
        if isinstance(cov, DiagLinearOperator):
            d, roots = cov.diagonal(), []
        else:
            d = cov._diag_tensor.diagonal()
            roots = [cov._linear_op.root.to_dense() * w_model.sqrt()]
        diag = DiagLinearOperator(w_model[..., 0] * d)
        if beta >= 1.0:
            if not roots:
                return diag
            return LowRankRootAddedDiagLinearOperator(LowRankRootLinearOperator(roots[0]), diag)
        e = err_root.to(d) * w_err.sqrt()
        e = e.expand(*torch.broadcast_shapes(d.shape, e.shape[:-1]), e.shape[-1])
        roots = [r.expand(*e.shape[:-1], r.shape[-1]) for r in roots]
        return LowRankRootAddedDiagLinearOperator(
            LowRankRootLinearOperator(torch.cat([*roots, e], -1)), diag
        )
    dense = cov.to_dense() if isinstance(cov, LinearOperator) else cov
    e = err_root.to(dense)
    # w_model * dense + w_err * (e e^T) with the products scaled and summed in place where the
    # shapes allow: the same numbers with two arrays of the covariance's size allocated, not
    # four (three at once: 0.55 GB at the peak beside the 0.19 GB covariances of the 600
    # calibration functions of the benchmark's meta-GP with analogs, now 0.37 GB)
    out, eet = w_model * dense, e @ e.mT
    if torch.broadcast_shapes(eet.shape, w_err.shape) == eet.shape:
        eet.mul_(w_err)
    else:
        eet = w_err * eet
    if torch.broadcast_shapes(out.shape, eet.shape) == out.shape:
        return out.add_(eet)
    return out + eet


def _check_batch(name: str, shape, batch, what: str, trailing: int = 0) -> None:
    """Refuse (``ValueError`` naming ``name``) a ``shape`` whose batch dims (all but the last
    ``trailing``) do not broadcast with ``batch``."""
    try:
        torch.broadcast_shapes(tuple(shape)[: len(shape) - trailing], tuple(batch))
    except RuntimeError:
        raise ValueError(f"{name}: expected {what}, received {tuple(shape)}") from None


def local_root(err: Tensor, val_mean: Tensor, mean: Tensor, k: int) -> Tensor:
    r"""Analog error root: the errors of the ``k`` validation functions whose Step-1 means are
    nearest (Euclidean, over the whole grid) to each ``mean [B, nt, N]``.

    ``err, val_mean [V, nt, N]`` -> ``[B, nt, N, k]`` (:math:`E_{\rm near} / \sqrt k`).
    """
    d = torch.cdist(mean.flatten(1).to(_F64), val_mean.flatten(1).to(_F64))  # [B, V]
    idx = d.topk(k, dim=-1, largest=False).indices  # [B, k]
    return err[idx].permute(0, 2, 3, 1) / math.sqrt(k)


def coverage_scale(z: Tensor) -> float:
    """Scale ``s`` of the variance that puts 90 % of the z-scores ``z`` inside ``+-1.645``."""
    q = quantile_of_all(z.abs().to(_F64), 0.9)
    return float((q / Z90) ** 2)


def fit_hybrid(
    mean: Tensor,
    cov: LinearOperator | Tensor,
    truth: Tensor,
    update: Callable[[GaussianPosterior, Tensor], GaussianPosterior],
    t: Tensor,
    x: Tensor,
    betas: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
    neighbours: Sequence[int] = (0,),
    local_scale: bool = False,
    selection: str = "min",
) -> HybridCalibration:
    r"""Fit :class:`HybridCalibration` on ``V`` validation functions.

    ``mean, truth [V, nt, N]``, ``cov`` the Step-1 covariance ``[V, nt, N, N]`` (scale 1);
    ``update(prior, idx)`` applies Step 2 to the validation functions ``idx`` (their masses).
    2-fold: the error root is built on one half, scored on the other. An analog size
    ``K >= V // 2`` (a fold's size) is skipped: in a fold it takes all of that fold's errors
    and cannot be told from ``K = 0``; e.g. ``neighbours=(0, 20, 50)`` on the default 100
    validation functions of ``ProbConserv.calibrate`` tries ``K = 0`` and ``20`` only (all
    sizes skipped: ``ValueError``).

    ``selection`` picks ``(K, beta)`` from the held-out MSEs :math:`m_c = \bar e_c`
    (per-function squared errors :math:`e_{c,v}`): ``"min"`` the smallest; ``"one_se"`` the
    one-standard-error rule (Hastie, Tibshirani & Friedman, *Elements of Statistical
    Learning*, §7.10): among the candidates with :math:`m_c \le m_{c^*} +
    \operatorname{sd}_v(e_{c,v} - e_{c^*,v})/\sqrt V` (paired against the best
    :math:`c^*`), the one closest to the model's own covariance: largest :math:`\beta`, then
    all errors (``K = 0``) before analogs, then the smaller ``K``.
    """
    check_selection(selection)
    update = _check_update(update)
    check_covariance("cov", cov)
    mean = as_tensor("mean", mean, real=True)
    if mean.ndim != 3:
        raise ValueError(f"mean: expected shape [V, nt, N], received {tuple(mean.shape)}")
    truth = as_tensor("truth", truth, real=True)
    if truth.shape != mean.shape:
        raise ValueError(
            f"truth: expected shape {tuple(mean.shape)} (as mean), received {tuple(truth.shape)}"
        )
    if tuple(cov.shape) != (*mean.shape, mean.shape[-1]):
        raise ValueError(
            f"cov: expected shape {(*mean.shape, mean.shape[-1])} (one covariance per function "
            f"and slice), received {tuple(cov.shape)}"
        )
    t, x = as_tensor("t", t, real=True), as_tensor("x", x, real=True)
    if t.ndim > 1 or t.numel() != mean.shape[1]:
        raise ValueError(
            f"t: expected shape ({mean.shape[1]},) (one per slice), received {tuple(t.shape)}"
        )
    if x.ndim != 1 or x.numel() != mean.shape[2]:
        raise ValueError(
            f"x: expected shape ({mean.shape[2]},) (the grid), received {tuple(x.shape)}"
        )
    betas = tuple(
        check_real("betas", b, minimum=0.0, maximum=1.0)
        for b in _sequence("betas", betas, "weights in [0, 1], e.g. (0.5, 1.0)")
    )
    if not betas:
        raise ValueError("betas: expected at least one weight in [0, 1], received none")
    neighbours = tuple(
        check_int("neighbours", k, minimum=0)
        for k in _sequence("neighbours", neighbours, "analog sizes, e.g. (0, 20); 0: all errors")
    )
    if not neighbours:
        raise ValueError("neighbours: expected at least one analog size (0: all errors)")
    if not isinstance(local_scale, bool):
        raise TypeError(f"local_scale: expected True or False, received {local_scale!r}")
    v = mean.shape[0]
    if v < 4:
        raise ValueError(f"validation set: expected at least 4 functions, received {v}")
    err = (mean - truth).to(_F64)  # [V, nt, N]
    var = cov.diagonal(dim1=-2, dim2=-1) if isinstance(cov, Tensor) else cov.diagonal()
    half = v // 2
    folds = [
        (torch.arange(half), torch.arange(half, v)),
        (torch.arange(half, v), torch.arange(half)),
    ]
    # the evaluation halves as slices: a fold's covariance is a view of the validation
    # covariances (indexed with ev_idx, the dense ones' half was copied for every (K, beta))
    spans = [slice(half, v), slice(0, half)]

    def sub(c, idx):
        if isinstance(c, DiagLinearOperator):
            return DiagLinearOperator(c.diagonal()[idx])
        if isinstance(c, LowRankRootAddedDiagLinearOperator):
            return LowRankRootAddedDiagLinearOperator(
                LowRankRootLinearOperator(c._linear_op.root.to_dense()[idx]),
                DiagLinearOperator(c._diag_tensor.diagonal()[idx]),
            )
        return (c.to_dense() if isinstance(c, LinearOperator) else c)[idx]

    def pieces(fit_idx):
        e = err[fit_idx]  # [v, nt, N]
        root = e.permute(1, 2, 0) / math.sqrt(len(fit_idx))  # [nt, N, v]
        a = float(e.pow(2).sum(-1).mean() / var[fit_idx].sum(-1).mean().clamp_min(1e-300))
        return root, a

    def held_out(k, beta):
        out = []
        for (fit_idx, ev_idx), span in zip(folds, spans):
            root, a = pieces(fit_idx)
            if k:
                root = local_root(err[fit_idx], mean[fit_idx], mean[ev_idx], k)
            c = hybrid_covariance(sub(cov, span), root, beta, a, 1.0)
            prior = GaussianPosterior(mean[ev_idx], c, event_shape=(x.numel(),), validate=False)
            post = update(prior, ev_idx)
            if not isinstance(post, GaussianPosterior) or post.mean.shape != prior.mean.shape:
                got = (
                    f"a GaussianPosterior with mean {tuple(post.mean.shape)}"
                    if isinstance(post, GaussianPosterior)
                    else type(post).__name__
                )
                raise TypeError(
                    "update: expected update(prior, idx) to return a GaussianPosterior with mean "
                    f"{tuple(prior.mean.shape)} (the prior's), received {got}"
                )
            out.append((ev_idx, prior, post))
        return out

    cv, per_fn = {}, {}
    for k in neighbours:
        if k >= half:
            continue
        for beta in betas:
            if k and beta == 1.0:
                continue  # beta = 1 ignores the errors: same for every k
            per = torch.zeros(v, dtype=_F64, device=truth.device)  # [V] held-out MSE per function
            for i, _, p in held_out(k, beta):
                per[i] = (p.mean - truth[i]).to(_F64).pow(2).flatten(1).mean(-1)
            per_fn[(int(k), float(beta))] = per
            cv[(int(k), float(beta))] = float(per.mean())
    if not cv:
        raise ValueError(
            f"neighbours: every analog size {tuple(int(k) for k in neighbours)} is >= half the "
            f"{v} validation functions ({half}); use 0 (all errors) or fewer neighbours"
        )
    k, beta = select_candidate(cv, per_fn, selection)
    cv_se = paired_se(per_fn, min(cv, key=cv.get))
    zp, zq = torch.zeros_like(err), torch.zeros_like(err)
    for i, prior, post in held_out(k, beta):
        # in float64, as err (float32 validation sets failed at the index put, and the floor
        # 1e-300 is 0 in float32)
        zp[i] = (truth[i] - prior.mean).to(_F64) / prior.variance.to(_F64).clamp_min(1e-300).sqrt()
        zq[i] = (truth[i] - post.mean).to(_F64) / post.variance.to(_F64).clamp_min(1e-300).sqrt()
    root, a = pieces(torch.arange(v))
    # copies (copy=True): a float64 t, x or mean was the caller's own tensor, so an in-place edit
    # of it after the fit changed the grid that matches() compares against and the analog
    # means the neighbours are found among
    return HybridCalibration(
        t=t.to(_F64, copy=True),
        x=x.to(_F64, copy=True),
        err_root=root,
        beta=beta,
        trace_ratio=a,
        prior_scale=coverage_scale(zp),
        post_scale=coverage_scale(zq),
        cv_mse=cv,
        neighbours=int(k),
        val_mean=mean.to(_F64, copy=True) if k else None,
        val_z={"prior": zp, "post": zq} if k and local_scale else None,
        selection=selection,
        cv_se=cv_se,
    )


def _sequence(name: str, value, what: str) -> tuple:
    """``value`` as a tuple, or a ``TypeError`` naming ``name``: a single number failed with
    "'float' object is not iterable" (and a string was read character by character)."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"{name}: expected a sequence of {what}, received {type(value).__name__} {value!r}"
        )
    return tuple(value)


def _check_update(update):
    """``update`` as a callable of two positional arguments ``(prior, idx)``."""
    if not callable(update):
        raise TypeError(
            f"update: expected a callable update(prior, idx), received {type(update).__name__}"
        )
    try:
        sig = inspect.signature(update)
    except (TypeError, ValueError):  # no signature to check (some builtins)
        return update
    try:
        sig.bind(None, None)
    except TypeError as err:
        raise TypeError(
            f"update: expected a callable update(prior, idx) of two positional arguments, "
            f"received {getattr(update, '__name__', type(update).__name__)}{sig}"
        ) from err
    return update
