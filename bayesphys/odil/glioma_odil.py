r"""Joint ODIL refinement of a fitted :class:`~bayesphys.odil.GliomaModel`.

Unknowns are the tumour-cell field :math:`c` on ``nt`` time levels of the crop plus
:math:`\theta = (\log D_w, \log\rho, x_0, \dots)`; residuals are the Crank-Nicolson
Fisher-Kolmogorov residual divided by :math:`\sigma_{pde}` (the PDE as a soft constraint with a
model-error scale), the model's data and prior terms, and :math:`c(0) = c_0(x_0)` imposed
exactly (Karnakov et al., PNAS Nexus 2024; Balcerak et al., GliODIL). Field tensors
``[nt - 1, *crop]``; the :math:`\theta` marginal covariance comes from the Schur complement of
the Gauss-Newton matrix without densifying the field block.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import TYPE_CHECKING

import torch

from .._checks import check_int, check_real, did_you_mean
from .._model import FitResult
from .._stack import user_stacklevel
from .._time_budget import check_max_seconds
from .._warning_types import BayesphysRuntimeWarning
from ..problems.fisher_kolmogorov import fk_forward, fk_residual, max_step
from ._cg_shortfall import _cg_shortfall
from ._glioma_fit import drop_recalibration
from .laplace import _FLOAT32_CG_TOL, theta_covariance
from .problem import DiscreteProblem
from .solvers import minimize

if TYPE_CHECKING:
    from .glioma import GliomaModel

__all__ = ["fit_joint_odil"]

# tolerance of the steps' CG solves
_STEP_TOL = 1e-6
# why the theta covariance's CG columns stopped short (_cg_shortfall's keys), with fit_odil's
# remedies (its own arguments: cg_maxiter, linear_solver, nt, sigma_pde, the model's dtype)
_COV_WHY = {
    "capped": (
        "stopped short at their iteration limit, 4 x cg_maxiter: raise cg_maxiter (given "
        "{cg_maxiter}), or use linear_solver='sparse' (a float64 model)"
    ),
    "stalled": (
        "stopped short on round-off within their iteration limit (CG's updated residual met "
        "the tolerance, the true one did not, so more iterations do not help): use a float64 "
        "model, or linear_solver='sparse'"
    ),
    "broke down": (
        "broke down (a non-positive curvature: the field block of the joint fit's "
        "Gauss-Newton matrix is not positive definite to round-off, so more iterations "
        "do not help): check nt / sigma_pde, or use linear_solver='sparse' (a float64 "
        "model)"
    ),
    "not finite": "gave residuals that are not finite: check nt / sigma_pde, or use float64",
}
# the float32 covariance CG's tolerance, a decade below the residual it is judged at (1e-5)
_FLOAT32_COV_SOLVE_TOL = 1e-6


def _covariance_tols(dtype: torch.dtype) -> tuple[float, float]:
    """``(solve, check)``: the CG tolerance of the theta covariance's Schur solves and the
    true relative residual above which a column is reported short. float64: ``1e-8`` both.
    float32 stops near a true residual of 1e-6 to 1e-5 on these systems, so ``1e-8`` was never
    met and every float32 fit warned: it is judged at laplace's float32 default
    (:data:`~bayesphys.odil.laplace._FLOAT32_CG_TOL`, ``1e-5``) and solved a decade below it,
    as CG stops on its updated residual and the true one, judged here, drifts above that in
    float32 (a 16 x 16 phantom, ``nt=4``, solved at ``1e-5``: a column at ``1.04e-5``)."""
    if dtype == torch.float64:
        return 1e-8, 1e-8
    return _FLOAT32_COV_SOLVE_TOL, _FLOAT32_CG_TOL


def _start_substeps(model: GliomaModel, theta: torch.Tensor, nt: int) -> int:
    r"""Explicit steps per time level of the start trajectory: the model's own count spread
    over the ``nt - 1`` levels (rounded down, as before), raised where that step is above the
    Euler scheme's stability bound for the fitted :math:`D_w, \rho`. Rounding down gave
    fewer steps than the model's stable count when ``nt - 1`` lies between half of it and
    all of it (e.g. 5 steps for 8), and a fitted :math:`D_w` near ``d_max`` then started the
    joint fit from a blown-up state, with a stability warning naming a ``steps`` that is
    not fit_odil's."""
    sub = max(1, model.steps // (nt - 1))
    bound = max_step(
        model.faces,
        float(torch.exp(theta[0])),  # inf past the float range, not an OverflowError
        float(torch.exp(theta[1])),
        model.config["spacing"],
        "euler",
    )
    if math.isfinite(bound) and bound > 0:
        # the factor keeps t_end / need from rounding to just above the bound
        need = math.ceil(model.config["t_end"] / bound * (1 + 1e-12))
        sub = max(sub, math.ceil(need / (nt - 1)))
    return sub


def fit_joint_odil(
    model: GliomaModel,
    *,
    nt: int = 16,
    sigma_pde: float = 1e-3,
    steps: int = 8,
    cg_maxiter: int = 400,
    progress: bool = True,
    linear_solver: str = "cg",
    max_seconds: float | None = None,
) -> FitResult:
    """Run the joint field-and-parameter fit on ``model`` (see :meth:`GliomaModel.fit_odil`);
    sets ``model.theta`` / ``model.theta_cov`` and returns the :class:`FitResult`. It starts
    at the fitted mode (:meth:`GliomaModel.fitted_theta`: any recalibration map undone), the
    estimate of an earlier ``fit_odil`` if there was one (a second call continues from it).

    ``nt >= 2`` time levels, ``sigma_pde > 0``, ``steps >= 0``, ``cg_maxiter >= 1``;
    ``linear_solver`` ``"cg"`` (matrix-free, as before) or ``"sparse"`` (coloured Jacobian and
    sparse LU for both the Levenberg-Marquardt steps and the Schur complement; a float64
    model). The fit's result becomes ``model.result``. If ``steps >= 1`` were taken, none was
    accepted and the start is not a minimum (``converged`` False), the model keeps its previous
    ``theta`` / ``theta_cov`` / ``result`` (a ``RuntimeWarning`` says so; the returned result
    has ``extra["kept_previous"]``); ``steps=0`` sets the posterior at the start. Short inner
    CG solves give one ``fit_odil:`` warning per kind at the user's line, worded in
    :meth:`GliomaModel.fit_odil`'s arguments."""
    if linear_solver not in ("cg", "sparse"):
        raise ValueError(
            f"linear_solver: expected 'cg' or 'sparse', received {linear_solver!r}"
            f"{did_you_mean(linear_solver, ('cg', 'sparse'))}"
        )
    if linear_solver == "sparse" and model.dtype != torch.float64:
        raise ValueError(
            f"linear_solver: 'sparse' assembles a float64 coloured Jacobian, and this "
            f"GliomaModel is {model.dtype}: build it with dtype=torch.float64, or use "
            "linear_solver='cg'"
        )
    nt = check_int("nt", nt, minimum=2)
    sigma_pde = check_real("sigma_pde", sigma_pde, minimum=0.0, strict=True)
    steps = check_int("steps", steps, minimum=0)
    cg_maxiter = check_int("cg_maxiter", cg_maxiter, minimum=1)
    max_seconds = check_max_seconds(max_seconds)  # before the forward start
    model._require_fit()
    cfg = model.config
    t_end = cfg["t_end"]
    dt = t_end / (nt - 1)
    # the fitted mode, not a recalibrated one: recalibrate() shifts model.theta off the
    # optimum, and a steps=0 fit set the joint posterior (recalibration cleared) there
    theta_fit = model.fitted_theta()[0]
    sub = _start_substeps(model, theta_fit, nt)
    fwd_steps = sub * (nt - 1)
    c0 = model.initial_state(theta_fit)
    _, traj = fk_forward(
        c0,
        model.faces,
        torch.exp(theta_fit[0]),
        torch.exp(theta_fit[1]),
        t_end=t_end,
        steps=fwd_steps,
        spacing=cfg["spacing"],
        tissue=model._brain,
        save_every=sub,
    )
    mask = model._brain

    def res(f, p):
        th = p["theta"]
        c0_ = model.initial_state(th) * mask
        c = torch.cat([c0_[None], f["c"] * mask], 0)
        pde = (
            fk_residual(
                c,
                model.faces,
                torch.exp(th[0]),
                torch.exp(th[1]),
                dt=dt,
                spacing=cfg["spacing"],
                scheme="cn",
            )
            * mask
        )
        out = {"pde": pde / sigma_pde}
        out.update(model._data_residuals(c[-1]))
        out["prior"] = model._prior_residuals(th)
        return out

    prob = DiscreteProblem(
        {"c": (nt - 1, *model.shape)},
        {"theta": theta_fit},
        res,
        device=model.device,
        dtype=model.dtype,
    )
    x0 = prob.pack({"c": traj[1:].detach()}, {"theta": theta_fit}).detach()
    if linear_solver == "cg":
        solve = {"linear_solver": "cg", "cg_tol": _STEP_TOL, "cg_maxiter": cg_maxiter}
    else:
        solve = {"linear_solver": "sparse"}
    t0 = time.perf_counter()
    # the inner solvers' short-CG warnings are worded here, in fit_odil's arguments (no
    # warnings filter swapped: filters are process-wide, shared with fits in other threads)
    x, out = minimize(
        prob,
        x0,
        method="lm",
        steps=steps,
        damping=1e-3,
        tol=1e-8,
        progress=progress,
        warn_inexact=False,
        max_seconds=max_seconds,
        **solve,
    )
    all_rels = out.extra.get("cg_rel", [])
    step_broke = out.extra.get("cg_breakdown", [False] * len(all_rels))
    short = [j for j, r in enumerate(all_rels) if math.isfinite(r) and r > _STEP_TOL]
    if short:
        # a solve that broke down (a non-positive curvature) is not mended by more iterations
        capped = [j for j in short if not step_broke[j]]
        broke = [j for j in short if step_broke[j]]
        why = []
        if capped:
            why.append(
                f"{len(capped)} stopped within cg_maxiter={cg_maxiter} iterations: raise "
                f"cg_maxiter (given {cg_maxiter}), or use linear_solver='sparse' (a float64 model)"
            )
        if broke:
            why.append(
                f"{len(broke)} broke down (a non-positive curvature: the damped Gauss-Newton "
                "matrix of the joint fit is not positive definite to round-off, so more "
                "iterations do not help): check nt / sigma_pde, or use linear_solver='sparse' "
                "(a float64 model)"
            )
        warnings.warn(
            f"fit_odil: the conjugate-gradient solves of {len(short)} of {len(all_rels)} "
            f"Levenberg-Marquardt steps stopped short (largest relative residual "
            f"{max(all_rels[j] for j in short):.1e}), so the steps are inexact: "
            f"{'; '.join(why)}",
            BayesphysRuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    if steps > 0 and len(out.loss_history) == 1 and not out.converged:
        # not one step accepted: the joint optimum was not reached, so the model keeps the
        # posterior it had (a Laplace covariance at the unmoved start would pass for the
        # joint fit's)
        remedy = (
            "raise max_seconds"
            if out.message.startswith("time budget")
            else "raise steps, or check nt / sigma_pde"
        )
        warnings.warn(
            f"fit_odil: no Levenberg-Marquardt step was accepted ({out.message}); the model "
            f"keeps its previous posterior ({remedy})",
            BayesphysRuntimeWarning,
            stacklevel=user_stacklevel(),
        )
        out.seconds = time.perf_counter() - t0
        out.extra.update({"schur_cg_iters": [], "n_unknowns": prob.n, "kept_previous": True})
        return out
    theta = prob.unpack(x)[1]["theta"].detach()
    cov_tol, short_tol = _covariance_tols(model.dtype)
    try:
        cov, info = theta_covariance(
            prob,
            x,
            ["theta"],
            cg_tol=cov_tol,
            cg_maxiter=4 * cg_maxiter,
            sparse=linear_solver == "sparse",
            warn_inexact=False,
        )
    except ValueError as err:
        # theta_covariance's refusal names its own argument 'params', which fit_odil does not
        # have (a float32 model with the default sigma_pde met it on a 16 x 16 phantom)
        hint = f"raise cg_maxiter (given {cg_maxiter}), " if linear_solver == "cg" else ""
        hint += "check nt / sigma_pde"
        if model.dtype == torch.float32:  # round-off: the covariance needs float64 there
            hint += ", or build the model with dtype=torch.float64"
        raise ValueError(
            f"fit_odil: the theta covariance of the joint fit (the Schur complement of its "
            f"Gauss-Newton matrix) could not be formed, so the model keeps its previous "
            f"posterior; {hint} ({err})"
        ) from err
    resids = info.get("cg_residuals", [])
    n = len(resids)
    short = _cg_shortfall(
        resids,
        info.get("cg_breakdown", [False] * n),
        info.get("cg_capped", [True] * n),  # without the flags: read as the cap, as before
        short_tol,
    )
    if short:
        worst = max(resids[j] for cols in short.values() for j in cols)
        why = [_COV_WHY[k].format(cg_maxiter=cg_maxiter) for k in _COV_WHY if k in short]
        warnings.warn(
            "fit_odil: the conjugate-gradient solves of the theta covariance (Schur "
            f"complement) {'; some '.join(why)} (largest relative residual {worst:.1e}), so "
            "theta_cov may be off",
            BayesphysRuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    model.theta, model.theta_cov = theta, cov
    drop_recalibration(model, "fit_odil")
    out.seconds = time.perf_counter() - t0
    out.extra.update({"schur_cg_iters": info["cg_iters"], "n_unknowns": prob.n})
    out.extra.update(model.estimates())
    model.result = out  # the fit behind the posterior the model now holds
    return out
