r"""The reduced-space fit of a :class:`~bayesphys.odil.GliomaModel` and its Laplace posterior
(Karnakov et al., PNAS Nexus 2024: ODIL; Balcerak et al., GliODIL, arXiv 2312.05063).

The discrete Fisher-Kolmogorov scheme is imposed exactly by the forward solver; the loss over
:math:`\theta = (\log D_w, \log\rho, \text{foci})` ``[2 + K d]`` is minimised by
Levenberg-Marquardt (:func:`~bayesphys.odil.minimize`, dense tangent-linear Jacobian) from the
best point of a ``grid x grid`` log-grid of :math:`(D_w, \rho)` around the prior mean. The
Laplace covariance is the inverse of the exact Hessian of the loss (the Gauss-Newton
:math:`J^\top J` where that is not positive definite, or on request).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, did_you_mean
from .._device import check_finite_input
from .._model import FitResult, autograd_on
from .._stack import user_stacklevel
from .._time_budget import check_max_seconds
from .._warning_types import BayesphysRuntimeWarning, BayesphysUserWarning
from ._glioma_setup import check_built
from .solvers import minimize

if TYPE_CHECKING:
    from .glioma import GliomaModel

__all__ = ["drop_recalibration", "fit_reduced", "hessian_covariance"]

#: the largest crop voxels x time steps x parameters whose exact Hessian is formed in one
#: vectorised pass (a 64 x 64 phantom case: ~1e6; a 3-D atlas case at 2 mm: ~8e7, looped)
_VECTORIZED_HESSIAN_CELLS = 5_000_000


def fit_reduced(
    model: GliomaModel,
    data: Any,
    *,
    steps: int,
    grid: int,
    hessian: str,
    progress: bool,
    max_seconds: float | None = None,
) -> FitResult:
    """Run :meth:`~bayesphys.odil.GliomaModel.fit` on ``model`` (its docstring states the
    arguments and the result); sets its Laplace posterior and ``result``."""
    if data is not None:
        raise ValueError(
            "data: expected None; GliomaModel takes its data (wm, gm, labels, pet) at "
            f"construction, received {type(data).__name__}"
        )
    steps = check_int("steps", steps, minimum=0)
    grid = check_int("grid", grid, minimum=1)
    max_seconds = check_max_seconds(max_seconds)  # before the start search
    if hessian not in ("exact", "gn"):
        raise ValueError(
            f"hessian: expected 'exact' or 'gn', received {hessian!r}"
            f"{did_you_mean(hessian, ('exact', 'gn'))}"
        )
    for fk in model.focus_init.reshape(model.n_foci, model.ndim):  # where the fit starts
        check_in_crop(model, fk, "focus_init")
    t0 = time.perf_counter()
    # the fit draws no random numbers, so it leaves the global random state alone (it
    # used to reseed torch's generator with the model's seed as a side effect)
    pr = model._prior()
    th = model._theta0()
    best, best_loss = th, math.inf
    with torch.no_grad():
        span = np.linspace(-1.0, 1.0, grid) if grid > 1 else np.zeros(1)
        for a in span:
            for b in span:
                cand = th.clone()
                cand[0] = pr["log_dw"][0] + a * pr["log_dw"][1]
                cand[1] = pr["log_rho"][0] + b * pr["log_rho"][1]
                if math.exp(float(cand[0])) > model.config["d_max"]:
                    continue
                val = float(model.loss(cand))
                if val < best_loss:
                    best, best_loss = cand, val
        if not math.isfinite(best_loss):
            # every start had D_w > d_max (e.g. grid=1 with d_max below the prior mean): the
            # start is clamped to d_max instead of running LM from an unstable time step
            best = th.clone()
            best[0] = min(float(best[0]), math.log(model.config["d_max"]) - 1e-9)
            best_loss = float(model.loss(best))
    prob = model.problem()
    x, res = minimize(
        prob,
        best.detach(),  # a start, not a graph (minimize reads it detached)
        method="lm",
        steps=steps,
        linear_solver="dense",
        tol=1e-9,
        progress=progress,
        damping=1e-2,
        jacobian=model.jacobian,
        max_seconds=max_seconds,
    )
    dw, d_max = math.exp(float(x[0])), model.config["d_max"]
    if dw > d_max:
        res.message += f"; warning: D_w={dw:.4g} above d_max={d_max} (time step unstable)"
        # the text names no fitted value, so a loop of fits (foci selection, calibration)
        # shows it once per line under the default filters; result.message has D_w
        warnings.warn(
            f"fit: the fitted D_w is above d_max={d_max:g}, the largest D_w the explicit "
            "time step is sized for, so the forward solve at the estimate is unstable and "
            "the fit unreliable; rebuild the model with a larger d_max (e.g. twice the "
            "fitted D_w in result.message, GliomaModel.from_patient(..., d_max=...)) and "
            "fit again",
            BayesphysRuntimeWarning,
            # the user's line also when a package loop fits (select_n_foci, calibration)
            stacklevel=user_stacklevel(),
        )
    # the covariance is taken at the new estimate: the previous fit's recalibration map is
    # set aside meanwhile (laplace_covariance reads the fitted mode, with any map undone)
    last_theta, last_map = model.theta, model.recalibration
    model.theta, model.recalibration = x.detach(), None
    try:
        cov = model.laplace_covariance(hessian)
    except BaseException:  # the last good fit stays whole (theta, theta_cov, result, map)
        model.theta, model.recalibration = last_theta, last_map
        raise
    model.theta_cov, model.recalibration = cov, last_map
    drop_recalibration(model, "fit")
    res.seconds = time.perf_counter() - t0
    res.extra.update(model.estimates())
    res.extra["grid_start_loss"] = best_loss
    model.result = res
    return res


def drop_recalibration(model: GliomaModel, where: str) -> None:
    """Clear the :meth:`~bayesphys.odil.GliomaModel.recalibrate` map of ``model`` once a fit
    has set a new posterior, with a ``UserWarning`` at the user's line when there was one:
    the map was applied to the previous fit's posterior, and the new one is uncalibrated
    until ``recalibrate`` is called again (it was dropped without a word). A fit that keeps
    the previous posterior keeps its map and does not come here."""
    if model.recalibration is None:
        return
    model.recalibration = None
    warnings.warn(
        f"{where}: the recalibrate() map in force was applied to the previous fit's posterior "
        "and is dropped: the model now holds this fit's uncalibrated Laplace posterior. Call "
        "recalibrate(shift, scale) again to apply the map to it",
        BayesphysUserWarning,
        stacklevel=user_stacklevel(),
    )


def hessian_covariance(model: GliomaModel, hessian: str) -> Tensor:
    r"""Laplace covariance ``[2 + K d, 2 + K d]`` of ``model`` at its fitted :math:`\theta^*`
    (:meth:`~bayesphys.odil.GliomaModel.fitted_theta`, any recalibration map undone;
    :meth:`~bayesphys.odil.GliomaModel.laplace_covariance`)."""
    if hessian not in ("exact", "gn"):
        raise ValueError(
            f"hessian: expected 'exact' or 'gn', received {hessian!r}"
            f"{did_you_mean(hessian, ('exact', 'gn'))}"
        )
    # the fitted mode: a recalibrate() map shifts model.theta off it (by b sds), and the
    # Hessian taken there was another covariance, with a fallback warning of a fit that had
    # not stopped at a minimum
    model._require_fit()
    theta = model.theta if model.recalibration is None else model.fitted_theta()[0]
    if hessian == "gn":
        h = _gauss_newton_matrix(model, theta)
    else:
        # J^T J only where it is used (the fallback below): the tangent-linear Jacobian is
        # (p + 1) forward solves' work (0.17 s beside the exact Hessian's 1.8 s on a B5
        # crop of 15^3 voxels, 188 steps) and was formed at every fit for nothing.
        # jacobian's refusals come first, as when it was formed up front (a NaN theta: its
        # ValueError, before any Hessian work)
        check_built(model, "jacobian")
        check_finite_input("theta", model._theta(theta))
        # the Hessian rows in one batched double-backward (vmap) where the rows' graphs are
        # small: the same values as row by row in about half the time, but p times the
        # memory (a three-focus 3-D atlas case went from 8 GB to beyond 23 GB)
        cells = model._wm.numel() * model.steps * theta.numel()
        # row by row under torch.autograd.set_detect_anomaly(True): the anomaly check of
        # the batched pass reads each gradient with .item(), which vmap cannot batch (the
        # fit failed with "Batching rule not implemented for aten::item"); the same values
        vectorize = cells <= _VECTORIZED_HESSIAN_CELLS and not torch.is_anomaly_enabled()
        # autograd on: inside torch.inference_mode() the Hessian came back zero, so the
        # covariance fell back to J^T J with a warning that theta is no minimum
        with autograd_on():
            he = torch.autograd.functional.hessian(model.loss, theta, vectorize=vectorize)
        he = 0.5 * (he + he.T)
        finite = bool(torch.isfinite(he).all())
        low = float(torch.linalg.eigvalsh(he).min()) if finite else float("nan")
        if low > 0:
            h = he
        else:
            h = _gauss_newton_matrix(model, theta)
            # the fallback was silent: the Gauss-Newton matrix is positive semi-definite
            # whatever the loss does, so its sds read as a confident posterior at a point
            # that is no minimum of the loss along some direction
            what = "not finite" if not finite else f"not positive definite (eigenvalue {low:.3g})"
            warnings.warn(
                f"laplace_covariance: the exact Hessian of the loss at the fitted theta is "
                f"{what}: theta is not a local minimum along some direction (a fit that "
                "stopped short, or a parameter the data do not determine), where a Laplace "
                "posterior does not hold. The covariance falls back to the Gauss-Newton "
                "matrix J^T J, whose sds do not show it; check result.converged and the "
                "estimates, fit again with more steps",
                BayesphysRuntimeWarning,
                stacklevel=user_stacklevel(),
            )
    cov = torch.linalg.inv(0.5 * (h + h.T))
    return 0.5 * (cov + cov.T)


def _gauss_newton_matrix(model: GliomaModel, theta: Tensor) -> Tensor:
    r"""The Gauss-Newton matrix :math:`J^\top J` ``[2 + K d, 2 + K d]`` of ``model`` at
    ``theta`` (:meth:`~bayesphys.odil.GliomaModel.jacobian`, tangent-linear)."""
    _, jac = model.jacobian(theta)
    return jac.T @ jac


def check_in_crop(model: GliomaModel, f: Tensor, name: str) -> None:
    """Refuse a fit of ``model`` starting from a focus ``f [d]`` (mm) outside the solver's crop:
    its initial tumour is ~0 there, so the fit has no signal (it used to run and end far from
    the lesion, silently). Checked in the fit, not at construction, so that
    :meth:`~bayesphys.odil.GliomaModel.recrop` and :meth:`~bayesphys.odil.GliomaModel.load`
    keep accepting a fitted model's focus guess."""
    h = model.config["spacing"]
    lo = [sl.start * h for sl in model.crop]
    hi = [sl.stop * h for sl in model.crop]
    if not all(lo[k] <= float(f[k]) < hi[k] for k in range(model.ndim)):
        box = " x ".join(f"[{a:g}, {b:g})" for a, b in zip(lo, hi))
        raise ValueError(
            f"{name}: expected a focus inside the solver's crop around the lesion ({box} mm), "
            f"received {[round(float(v), 2) for v in f]} mm; widen crop_margin_mm / "
            "crop_scale to start from there"
        )
