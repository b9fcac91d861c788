r"""Calibrated Step-1 covariances of :class:`~bayesphys.probconserv.model.ProbConserv`.

The model's covariance on its calibration grid, stage by stage (``"prior"``: Step 1 alone;
``"post"``: the covariance that the Step-2 update is applied to):

.. math::
    \Sigma_{\rm stage} = s_{\rm stage}(\hat\theta)\,\big(\beta a\Sigma_{\rm model}
    + (1-\beta)\Sigma_{\rm err}\big) + \hat\sigma_d^2 K_{\rm stage},
    \qquad K_{\rm prior} = K,\ K_{\rm post} = K_\perp,

with the hybrid covariance of :mod:`~bayesphys.probconserv.calibration`, the conformal scale
of :mod:`~bayesphys.probconserv.conditional` and the mass-residual discrepancy of
:mod:`~bayesphys.probconserv.mass_check`; and the fit of the last two on ``M`` calibration
functions. Shapes: means ``[B, nt, N]``, covariances ``[B, nt, N, N]``, masses ``[B, nt]``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .._checks import offset_seed
from .._quantile import quantile_of_all
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..posterior import GaussianPosterior
from ..problems.gpme import make_dataset
from ._inputs import check_mass
from .calibration import HybridCalibration, fit_hybrid, hybrid_covariance
from .conditional import fit_local_scale
from .mass_check import (
    add_discrepancy,
    discrepancy_roots,
    discrepancy_variance,
    fit_mass_kappa,
    gated_discrepancy_variance,
    mass_residual,
    outside_training_range,
)
from .update import conserve_slices, trapezoid_weights

if TYPE_CHECKING:
    from ..problems.gpme import GPMEData
    from ._inputs import CalibrateSettings
    from .model import ProbConserv

_F64 = torch.float64


def calibrated_step1(
    model: ProbConserv,
    mean: Tensor,
    cov,
    tt: Tensor,
    xx: Tensor,
    stage: str,
    mass=None,
    *,
    use_mass: bool = True,
    caller: str = "step1",
) -> GaussianPosterior:
    """The Step-1 posterior ``N(mean, cov)`` with the model's calibration of ``stage``
    (``"raw"``: none) applied on its calibration grid (elsewhere: a warning, uncalibrated).

    ``use_mass=False``: the calibration an unconstrained model can have, one that never sees
    the conservation right-hand side ``b``: the pooled scale of ``stage`` instead of the
    parameter-conditional one (whose parameter estimate reads ``b``), and no mass-residual
    check. ``caller`` (the public method) names the other-grid warning, given at the user's
    line."""
    nx = xx.numel()
    cal = model.calibration
    if cal is not None and stage != "raw":
        if cal.matches(tt, xx):
            if use_mass or cal.local is None:
                scale = cal.scale_for(mean, stage, mass)
            else:
                scale = cal.prior_scale if stage == "prior" else cal.post_scale
            root = cal.root_for(mean)
            out = hybrid_covariance(cov, root, cal.beta, cal.trace_ratio, scale)
            if use_mass and cal.mass_kappa is not None and cal.local is not None:
                ps = scale if stage == "prior" else cal.scale_for(mean, "prior", mass)
                pcov = hybrid_covariance(cov, root, cal.beta, cal.trace_ratio, ps)
                sd2, roots = discrepancy(cal, mean, pcov, xx, mass)
                out = add_discrepancy(out, sd2, roots[0] if stage == "prior" else roots[1])
            cov = out
        else:
            warnings.warn(
                f"{caller}: the hybrid calibration was fitted on another (t, x) grid "
                f"(calibration: {_grid_text(cal.t, cal.x)}; this query: {_grid_text(tt, xx)}), "
                "so the Step-1 covariance here is uncalibrated. " + _grid_advice(cal.x, xx),
                BayesphysUserWarning,
                stacklevel=user_stacklevel(),
            )
    return GaussianPosterior(mean, cov, event_shape=(nx,), validate=False)


def warn_stale_calibration(model: ProbConserv, where: str) -> None:
    """A ``UserWarning`` at the user's line when the calibration in force (``var_scale`` or
    the hybrid ``calibration``) was fitted by ``calibrate`` at another ``steps_done`` (a fit
    since, or a load and a fit): it scales the covariances of weights it was not fitted to.
    The message names the step of the calibration, not the current one, so a loop that trains
    on and asks for a posterior each time is shown it once under the default warnings filter."""
    at = model._calibrated_at
    if at is None or at == model.steps_done:
        return
    if model.calibration is None and model.var_scale == 1.0:
        return
    warnings.warn(
        f"{where}: the Step-1 calibration in force was fitted by calibrate() at step {at}, and "
        "the model has trained since: it was made for other weights. Call calibrate(...) "
        "again with the same settings to recalibrate",
        BayesphysUserWarning,
        stacklevel=user_stacklevel(),
    )


def _grid_text(t: Tensor, x: Tensor) -> str:
    """``t=[...], x: N points in [a, b]`` for a warning."""
    tv = [round(float(v), 6) for v in t.reshape(-1)[:6]]
    more = ", ..." if t.numel() > 6 else ""
    ts = ", ".join(str(v) for v in tv) + more
    xs = f"{x.numel()} points" + (
        f" in [{float(x.min()):.6g}, {float(x.max()):.6g}]" if x.numel() else ""
    )
    return f"t=[{ts}], x: {xs}"


def _grid_advice(cx: Tensor, xx: Tensor) -> str:
    """What to do about a query off the calibration grid (``calibrate`` fits on its ``t`` and
    the default 201-point ``x``)."""
    same_x = cx.shape == xx.shape and bool(torch.allclose(xx.to(cx), cx, rtol=0, atol=1e-12))
    if same_x:
        return (
            "Query at the calibration times, or call calibrate(..., t=<these times>) to "
            "calibrate this grid"
        )
    return (
        "Query on the calibration grid (x=None: its 201 points; t: the calibration times): "
        "calibrate(...) fits on the 201-point default x only"
    )


def discrepancy(
    cal: HybridCalibration, mean: Tensor, prior_cov, xx: Tensor, mass: Tensor
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Discrepancy variance ``[B, nt]`` from the mass residual under the final Step-1
    covariance ``prior_cov`` (zero inside the gate), and the roots of ``K`` and ``K_perp``
    (:mod:`.mass_check`)."""
    g = trapezoid_weights(xx).to(mean)
    r, v = mass_residual(mean, prior_cov, g, mass)
    root, perp, gkg = discrepancy_roots(xx.to(mean), g, cal.mass_length)
    if cal.mass_margin is None:
        return discrepancy_variance(r, v, cal.mass_kappa, gkg), (root, perp)
    pm = cal.local.pmap
    theta = pm(mean.detach().cpu(), mass.detach().cpu())  # fitted on the CPU
    out = outside_training_range(theta, pm.lo, pm.hi, cal.mass_margin)
    sd2 = gated_discrepancy_variance(r, v, cal.mass_kappa, gkg, out, cal.mass_floor)
    return sd2, (root, perp)


def mass_discrepancy_variance(
    model: ProbConserv,
    context: GPMEData,
    t: float | Tensor | None,
    *,
    mass: Tensor | None,
    seed: int | None,
) -> Tensor:
    r""":meth:`~bayesphys.probconserv.ProbConserv.mass_discrepancy` of ``model``: the
    mass-residual check's :math:`\hat\sigma_d^2` ``[B, nt]`` on the calibration grid."""
    model._check_context(context)
    cal = model.calibration
    if cal is None or cal.mass_kappa is None or cal.local is None:
        raise ValueError(
            "mass_discrepancy: calibrate(objective='hybrid', local_functions=M) with "
            "mass_check first"
        )
    tt, xx = model._grid(t, None)
    if not cal.matches(tt, xx):
        raise ValueError("t: expected the calibration times (the check is fitted there)")
    warn_stale_calibration(model, "mass_discrepancy")
    b = (
        model.mass(context, tt)
        if mass is None
        else check_mass(mass, len(context.params), len(tt), model.device)
    )
    raw = model._step1(context, tt, xx, seed=seed, stage="raw", sizes="context/t")
    ps = cal.scale_for(raw.mean, "prior", b)
    pcov = hybrid_covariance(raw.covariance, cal.root_for(raw.mean), cal.beta, cal.trace_ratio, ps)
    return discrepancy(model.calibration, raw.mean, pcov, xx, b)[0]


def fit_local(
    model: ProbConserv, val, val_mean, val_mass, tt, xx, m, local_seed, seed, param_range=None
) -> None:
    r"""Parameter-conditional scales on ``m >= 4`` fresh calibration functions (split
    conformal), and the mass-residual constant :math:`\kappa` on the same functions. Their
    parameters are drawn from ``param_range`` (default: the training range)."""
    cal = model.calibration
    data = make_dataset(
        model.problem,
        m,
        # offset_seed: seed + 100_003 wrapped into the seeds torch takes (it overflowed)
        seed=(None if seed is None else offset_seed(seed, 100_003))
        if local_seed is None
        else local_seed,
        param_range=param_range,
    )
    raw = model._step1(data, tt, xx, seed=0, stage="raw", sizes="local_functions/t")
    mean = raw.mean
    truth = model.problem.solution(tt[None, :, None], xx, data.params[:, None, None].to(_F64))
    truth = truth.to(mean)
    cov = hybrid_covariance(raw.covariance, cal.root_for(mean), cal.beta, cal.trace_ratio, 1.0)
    prior = GaussianPosterior(mean, cov, event_shape=(xx.numel(),), validate=False)
    mass = model.mass(data, tt)
    post = conserve_slices(
        prior, xx.to(model.device), mass, model.config.sigma_g, relative=model.config.relative
    )
    z = {
        "prior": (truth - mean) / prior.variance.clamp_min(1e-300).sqrt(),
        "post": (truth - post.mean) / post.variance.clamp_min(1e-300).sqrt(),
    }
    cal.local = fit_local_scale(
        val_mean, val_mass, val.params, mean, mass, data.params, z, model.problem.train_range
    )
    r, v = mass_residual(mean, cov, trapezoid_weights(xx).to(mean), mass)
    ps = cal.local.scale(mean, mass, "prior").to(v)  # the map is fitted on the CPU
    cal.mass_kappa = fit_mass_kappa(r, ps * v)
    theta = cal.local.pmap(mean.detach().cpu(), mass.detach().cpu())
    cal.mass_theta_sd = float((theta - data.params.to(theta)).std())


def warn_hybrid_with_mixture(model: ProbConserv) -> None:
    """A ``UserWarning`` (at the user's line, before the fit) for ``calibrate(objective=
    "hybrid")`` on an ANP model with ``covariance="mixture"``: the hybrid calibration is
    fitted to the moment-matched Step-1 covariance, its ``(K, beta)`` and post-update
    scale chosen by the scores of that covariance's single update, which the mixture model
    never makes (it updates each latent draw; ``posterior(method="probconserv")`` refuses the
    calibration, :func:`~._predict.mixture_posterior`). Not refused: its Step-1 (prior) scale
    still serves this model's unconstrained posteriors (``step1``, ``posterior(method="none"
    / "hardc")``, ``sigma_g=inf``) and ``mass_discrepancy``, which are the diagonal model's."""
    if model.config.step1 == "anp" and model.config.covariance == "mixture":
        warnings.warn(
            "calibrate: objective='hybrid' with covariance='mixture' fits a calibration that "
            "the ProbConserv posterior of this model cannot use: posterior(method="
            "'probconserv') updates each latent draw, and the hybrid calibration has no "
            "per-draw form, so it will be refused there. It serves only the Step-1 "
            "covariance (step1, posterior(method='none' / 'hardc'), sigma_g=inf, "
            "mass_discrepancy). For the ProbConserv posterior, calibrate with "
            "objective='ll' or 'coverage90', or build the model with covariance='diag' or "
            "'lowrank'",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )


def run_calibrate(
    model: ProbConserv,
    s: CalibrateSettings,
    data: GPMEData | None,
    t: float | Tensor | None,
    objective: str,
    selection: str,
) -> float:
    r"""The body of :meth:`ProbConserv.calibrate <bayesphys.probconserv.ProbConserv.calibrate>`
    with its settings checked (``s``): fits and stores the calibration, returns :math:`\beta`
    (hybrid) or the variance scale :math:`c`. A failure part-way (Ctrl-C included) keeps the
    previous calibration, hybrid or scalar."""
    widened = None
    if objective == "hybrid":
        warn_hybrid_with_mixture(model)
        widened = model.problem.widened_range(s.range_margin)
        model.problem.check_params(f"range_margin = {s.range_margin:g}", *widened)
    val = data
    if val is None:
        val = make_dataset(model.problem, s.n_functions, seed=s.seed, param_range=widened)
    tt, xx = model._grid(t, None)
    # the validation functions: the user's data, or n_functions drawn here
    sizes = "n_functions/t" if data is None else "data/t"
    prior = model._step1(val, tt, xx, seed=0, stage="raw", sizes=sizes)
    truth = model.problem.solution(tt[None, :, None], xx, val.params[:, None, None].to(_F64))
    truth = truth.to(prior.mean)
    if objective == "hybrid":
        mass = model.mass(val, tt)

        def update(p: GaussianPosterior, idx: Tensor) -> GaussianPosterior:
            return conserve_slices(
                p,
                xx.to(model.device),
                mass[idx],
                model.config.sigma_g,
                relative=model.config.relative,
            )

        before = (model.calibration, model.var_scale)
        try:  # a failure part-way keeps the previous calibration
            model.calibration = fit_hybrid(
                prior.mean,
                prior.covariance,
                truth,
                update,
                tt,
                xx,
                neighbours=s.neighbours,
                selection=selection,
            )
            model.var_scale = 1.0
            if s.local_functions:
                fit_local(
                    model,
                    val,
                    prior.mean,
                    mass,
                    tt,
                    xx,
                    s.local_functions,
                    s.local_seed,
                    s.seed,
                    param_range=widened,
                )
                cal = model.calibration
                cal.mass_length = float(s.mass_length * (xx[-1] - xx[0])) if s.mass_check else None
                cal.mass_margin = None
                if s.mass_check and s.mass_gate is not None:
                    cal.mass_margin = float(s.mass_gate * cal.mass_theta_sd)
                    cal.mass_floor = float(s.mass_floor)
                if not s.mass_check:
                    cal.mass_kappa = None
        except BaseException:
            model.calibration, model.var_scale = before
            raise
        model._calibrated_at = model.steps_done
        return model.calibration.beta
    z2 = (truth.to(prior.mean) - prior.mean).pow(2) / prior.variance.clamp_min(1e-12)
    if objective == "ll":
        scale = float(z2.mean())
    else:
        q = quantile_of_all(z2.sqrt(), 0.9)
        scale = float((q / 1.6448536269514722) ** 2)
    # set together once computed: a failure (Ctrl-C) while computing kept the variance scale
    # in force but had already dropped a hybrid calibration
    model.calibration, model.var_scale = None, scale
    model._calibrated_at = model.steps_done
    return model.var_scale
