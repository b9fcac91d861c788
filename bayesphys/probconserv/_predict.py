r"""Prediction of :class:`~bayesphys.probconserv.ProbConserv` (Hansen et al., ICML 2023): the
Step-1 posterior on a grid ``t [nt] x x [nx]`` (batch ``(B, nt)``, event ``(nx,)``, float64;
ANP: mean and diagonal or low-rank-plus-diagonal covariance from the latent draws, meta-GP:
dense per time slice) with its calibration, and the Step-2 update of it onto
:math:`\int u\,dx = b(t)` (``"probconserv"``, ``"hardc"`` or none).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from linear_operator.operators import (
    DiagLinearOperator,
    LowRankRootAddedDiagLinearOperator,
    LowRankRootLinearOperator,
)
from torch import Tensor

from .._checks import (
    check_bool,
    check_dense_memory,
    check_optional_seed,
    did_you_mean,
    stream_seed,
)
from .._device import as_tensor
from .._model import warn_untrained
from ..posterior import GaussianPosterior
from ._config import ANP_COVARIANCES
from ._inputs import check_mass, check_sigma_g_value
from ._model_calibration import calibrated_step1, warn_stale_calibration
from ._trained_range import warn_outside_trained
from ._update_checks import check_sigma_g, check_sigma_g_shape
from .anp import check_sets
from .mixture_update import check_mixture_memory, conserve_latent_mixture
from .update import conserve_slices, trapezoid_weights

if TYPE_CHECKING:
    from ..problems.gpme import GPMEData
    from .model import ProbConserv

__all__ = ["step1_posterior", "grid_mass", "updated_posterior"]

_F64 = torch.float64


def step1_posterior(
    model: ProbConserv,
    context: GPMEData,
    t: float | Tensor | None,
    x: Tensor | None,
    *,
    seed: int | None,
    stage: str,
    mass: Tensor | None,
    use_mass: bool,
    caller: str,
    sizes: str = "t/x",
) -> GaussianPosterior:
    """Step 1 of ``model`` with the calibration of ``stage`` (``"prior"``, ``"post"`` or
    ``"raw"``); ``mass [B, nt]`` feeds a parameter-conditional scale (``posterior`` passes
    the masses it conditions on);
    ``use_mass=False``: a calibration that never sees the mass (unconstrained baselines).
    ``caller``: the public method, named by the other-grid warning; ``sizes``: its arguments
    that set the functions, times and grid points, named by the meta-GP's memory refusal
    (``calibrate`` draws its own functions and grid)."""
    model._check_context(context)
    seed = check_optional_seed("seed", seed)
    tt, xx = model._grid(t, x)
    if stage != "raw":  # the calibrated posteriors (calibrate's own draws are raw)
        warn_stale_calibration(model, caller)
        warn_outside_trained(model, context, caller, use_mass and mass_check_applies(model, tt, xx))
    if not use_mass:
        mass = None
    nt, nx = tt.numel(), xx.numel()
    model.net.eval()
    if model.config.step1 == "anp":
        mu, var = latent_draws(model, context, tt, xx, seed)
        var = var.mean(0)
        mean = mu.mean(0)
        c = 1.0 if stage == "raw" else model.var_scale
        if model.config.covariance in ("diag", "mixture"):  # mixture: Step 2 per draw
            cov = DiagLinearOperator(c * (var + mu.var(0, unbiased=False)))
        else:
            s = mu.shape[0]
            root = (mu - mean).permute(1, 2, 3, 0) * math.sqrt(c / s)  # [B, nt, nx, S]
            cov = LowRankRootAddedDiagLinearOperator(
                LowRankRootLinearOperator(root), DiagLinearOperator(c * var)
            )
        return calibrated_step1(
            model, mean, cov, tt, xx, stage, mass, use_mass=use_mass, caller=caller
        )
    # the slices' dense covariances [B, nt, nx, nx] float64, and gpytorch's temporaries of one
    # slice's prediction (about 8 slices' worth, 4 times the result from 3 slices on)
    b = len(context)
    check_dense_memory(
        sizes,
        4 * 8 * b * nt * nx * nx,
        what=f"the meta-GP's dense covariances of {b} function(s) on {nt} times x {nx} grid "
        f"points ([{b}, {nt}, {nx}, {nx}] float64)",
        alternative="use a coarser grid (fewer t or x points) or fewer context functions per "
        "call, or step1='anp' with covariance='lowrank' or 'diag'",
        device=model.device,
    )
    xc, yc, xt = _net_inputs(model, context, tt, xx)
    mean = cov = None
    for j in range(nt):
        m, c = model.net.predict(xc.to(_F64), yc.to(_F64), xt[:, j * nx : (j + 1) * nx].to(_F64))
        if cov is None:  # filled slice by slice: no list of slices beside their stack
            mean = m.new_empty((b, nt, nx))
            cov = c.new_empty((b, nt, nx, nx))
        mean[:, j] = m
        cov[:, j] = c
        del m, c
    # in place, the same values as c * cov + 1e-10 I without the two copies of [B, nt, nx, nx]
    # (the stack, the scaled and the jittered covariances were four at once)
    cov.mul_(1.0 if stage == "raw" else model.var_scale)
    cov.add_(1e-10 * torch.eye(nx, dtype=_F64, device=cov.device))
    return calibrated_step1(model, mean, cov, tt, xx, stage, mass, use_mass=use_mass, caller=caller)


def mass_check_applies(model: ProbConserv, tt: Tensor, xx: Tensor) -> bool:
    """Whether a posterior that reads the mass gets the hybrid calibration's mass check on the
    grid ``tt x xx`` (:func:`~._model_calibration.calibrated_step1`)."""
    cal = model.calibration
    return (
        cal is not None
        and cal.mass_kappa is not None
        and cal.local is not None
        and cal.matches(tt, xx)
    )


def _net_inputs(
    model: ProbConserv, context: GPMEData, tt: Tensor, xx: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Step 1's inputs in the model's dtype and device: contexts ``x_c [B, Nc, 2]``,
    ``y_c [B, Nc]`` and the grid ``tt [nt] x xx [nx]`` as targets ``[B, nt nx, 2]``."""
    cast = {"device": model.device, "dtype": model.dtype}
    xc = as_tensor("context.x_context", context.x_context).to(**cast)
    yc = as_tensor("context.y_context", context.y_context).to(**cast)
    grid = torch.stack(torch.broadcast_tensors(tt[:, None], xx[None, :]), -1).reshape(-1, 2)
    return xc, yc, grid.to(**cast).expand(len(context), -1, -1)


def latent_draws(
    model: ProbConserv, context: GPMEData, tt: Tensor, xx: Tensor, seed: int | None
) -> tuple[Tensor, Tensor]:
    """The ANP's latent draws on the grid ``tt [nt] x xx [nx]``: means and variances
    ``[S, B, nt, nx]`` (float64, uncalibrated; ``S = config.n_samples``)."""
    if model.config.covariance not in ANP_COVARIANCES:  # assigned after construction
        cov_name = model.config.covariance
        raise ValueError(
            f"config.covariance: expected 'diag', 'lowrank' or 'mixture', received {cov_name!r}"
            f"{did_you_mean(cov_name, ANP_COVARIANCES)}"
        )
    b, nt, nx = len(context), tt.numel(), xx.numel()
    xc, yc, xt = _net_inputs(model, context, tt, xx)
    model.net.eval()
    if seed is None:  # torch's global stream, advancing it
        mu, sig = model.net.predict(xc, yc, xt, model.config.n_samples)
    else:
        check_sets(xc, yc, xt, ref=model.net.dec[0].weight, owner="AttentiveNP", same_dtype=True)
        with torch.no_grad():
            eps = function_noise(xc, yc, model.config.n_samples, model.net.hidden, seed)
            mu, sig = model.net._predict_noise(xc, yc, xt, eps)
    return mu.to(_F64).reshape(-1, b, nt, nx), sig.to(_F64).pow(2).reshape(-1, b, nt, nx)


def function_noise(xc: Tensor, yc: Tensor, n_samples: int, hidden: int, seed: int) -> Tensor:
    """The ANP's standard normal latent noise ``[S, B, H]`` for the functions of contexts
    ``xc [B, Nc, 2]``, ``y_c [B, Nc]``: each function's ``[S, H]`` from a stream of its own,
    seeded by ``seed`` and a hash of its context values, so that a function's draws, and the
    posterior built from them, are those it gets alone, whichever functions share the call and
    in whichever order (one ``[S, B, H]`` block from one stream gave a function other latent
    draws beside other functions: moments 1 % apart)."""
    out = []
    for i in range(xc.shape[0]):
        digest = hashlib.blake2b(digest_size=8)
        for part in (xc[i], yc[i]):
            digest.update(str(part.dtype).encode())
            digest.update(part.detach().cpu().contiguous().numpy().tobytes())
        key = int.from_bytes(digest.digest(), "little")
        s = stream_seed(seed, "probconserv/latent", key & 0xFFFFFFFF, key >> 32)
        g = torch.Generator(device=xc.device).manual_seed(s)
        out.append(torch.randn((n_samples, hidden), dtype=xc.dtype, device=xc.device, generator=g))
    return torch.stack(out, 1)


def grid_mass(model: ProbConserv, context: GPMEData, tt: Tensor, xx: Tensor) -> Tensor:
    """Analytic mass ``[B, nt]`` over the grid's span ``[x[0], x[-1]]``: the domain's
    :meth:`~bayesphys.probconserv.ProbConserv.mass` when the grid spans the domain, else the
    same problem's on the window (the domain's total would be forced into the window)."""
    lo, hi = model.problem.x_range
    tol = 1e-12 * max(1.0, abs(lo), abs(hi))
    x0, x1 = float(xx[0]), float(xx[-1])
    if abs(x0 - lo) <= tol and abs(x1 - hi) <= tol:
        return model.mass(context, tt)
    model.mass(context, tt)  # the same checks of the parameters
    params = context.params[:, None].to(_F64)
    if x0 == x1:  # an empty window (the problem refuses it as a domain) holds no mass
        return torch.zeros(params.shape[0], tt.numel(), dtype=_F64, device=model.device)
    # a grid running backwards integrates from x[0] down to x[-1]: minus the window's mass
    window = replace(model.problem, x_range=(min(x0, x1), max(x0, x1)))
    mass = window.mass(tt[None, :], params)
    return (mass if x0 < x1 else -mass).to(model.device)


def updated_posterior(
    model: ProbConserv,
    context: GPMEData,
    t: float | Tensor | None,
    x: Tensor | None,
    *,
    method: str,
    mass: Tensor | None,
    sigma_g: float | Tensor | None,
    relative: bool | None,
    seed: int | None,
) -> GaussianPosterior:
    """:meth:`~bayesphys.probconserv.ProbConserv.posterior` of ``model`` (its docstring states
    the arguments, their checks and the methods)."""
    model._check_context(context)
    if method not in ("probconserv", "hardc", "none"):
        raise ValueError(
            f"method: expected 'probconserv', 'hardc' or 'none', received {method!r}"
            f"{did_you_mean(method, ('probconserv', 'hardc', 'none'))}"
        )
    if method != "probconserv" and (sigma_g is not None or relative is not None):
        raise ValueError(
            f"sigma_g, relative: only with method='probconserv' (method={method!r} has no "
            f"constraint noise), received sigma_g={sigma_g!r}, relative={relative!r}"
        )
    if isinstance(sigma_g, Tensor):  # [B, nt, 1]: per function and slice
        check_sigma_g(sigma_g)
        check_sigma_g_shape(sigma_g, (len(context.params), len(model._grid(t, x)[0]), 1))
    elif sigma_g is not None:
        sigma_g = check_sigma_g_value("sigma_g", sigma_g)
    if relative is not None:
        relative = check_bool("relative", relative)
    sg = model.config.sigma_g if sigma_g is None else sigma_g
    rel = model.config.relative if relative is None else relative
    # sigma_g = inf is no update: the Step-1 posterior with its own ("prior") calibration,
    # not the covariance calibrated for the updated posterior
    no_update = bool(torch.isinf(torch.as_tensor(sg, dtype=_F64)).all())
    stage = "post" if method == "probconserv" and not no_update else "prior"
    tt, xx = model._grid(t, x)
    if method != "none":
        trapezoid_weights(xx)  # a grid the update can integrate on, before Step 1
    if mass is not None and method == "none":
        raise ValueError(
            "mass: method='none' is the unconstrained model and uses no mass; pass it with "
            "method='probconserv' or 'hardc'"
        )
    if mass is not None:
        b = check_mass(mass, len(context.params), len(tt), model.device)
    elif method != "none":
        b = grid_mass(model, context, tt, xx)
    else:
        b = None  # the unconstrained posterior needs no mass
    # after the argument checks: a call they refuse does not also warn
    warn_untrained("ProbConserv.posterior", model.steps_done)
    # the unconstrained baselines never see b: the constrained update is the only user of
    # the conservation law (HardC projects onto it, keeping the baseline's variance)
    baseline = method != "probconserv"
    # the ANP's setting: a meta-GP has no latent draws (its constructor refuses covariance,
    # and one assigned afterwards sent its posterior into the ANP's draws, a TypeError)
    mixture = model.config.step1 == "anp" and model.config.covariance == "mixture"
    if not baseline and not no_update and mixture:
        return mixture_posterior(model, context, tt, xx, b, sg, rel, seed)
    prior = model._step1(
        context,
        t,
        x,
        seed=seed,
        stage=stage,
        mass=b,
        use_mass=not baseline,
        caller="posterior",
    )
    if method == "none":
        return prior
    if method == "hardc":  # the projection has no constraint noise
        return conserve_slices(prior, xx.to(model.device), b, method=method)
    return conserve_slices(prior, xx.to(model.device), b, sg, relative=rel, method=method)


def mixture_posterior(
    model: ProbConserv,
    context: GPMEData,
    tt: Tensor,
    xx: Tensor,
    b: Tensor,
    sigma_g: float | Tensor,
    relative: bool,
    seed: int | None,
) -> GaussianPosterior:
    """``covariance="mixture"``: every latent draw's ``N(mu_s, c diag sigma_s^2)`` updated on
    its own and the updated mixture moment-matched
    (:func:`~bayesphys.probconserv.mixture_update.conserve_latent_mixture`, spread scaled by
    the variance scale ``c`` too); ``b [B, nt]``. The hybrid calibration, fitted to a
    moment-matched covariance, has no per-draw form and is refused."""
    if model.calibration is not None:
        raise ValueError(
            "config.covariance='mixture': the hybrid calibration (calibrate(objective="
            "'hybrid')) has no per-draw form; calibrate with objective='ll' or 'coverage90' "
            "(one variance scale), or use covariance='diag' / 'lowrank'"
        )
    seed = check_optional_seed("seed", seed)  # the context was checked by the caller
    # before the latent draws: the dense outputs are what cannot fit
    check_mixture_memory("t/x", len(context) * tt.numel(), xx.numel(), model.device)
    warn_stale_calibration(model, "posterior")
    warn_outside_trained(model, context, "posterior", gated=False)
    mu, var = latent_draws(model, context, tt, xx, seed)
    c = model.var_scale
    return conserve_latent_mixture(
        mu, c * var, xx.to(mu.device), b, sigma_g, relative=relative, spread_scale=c
    )
