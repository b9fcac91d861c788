r"""Post-hoc variance calibration of a trained :class:`~bayesphys.neural_process.RandomGridNP`.

The physics ELBO sets the forward model's spread through the learned residual scale
:math:`\sigma_r`, and nothing in training ties that spread to the actual error: on the
physics-only Poisson problem the 2-sigma bands come out too wide (coverage ~1.0). One scalar
variance multiplier per output, fitted on ``V`` validation instances with reference solutions,
fixes the width without touching the means:

.. math:: s = \Big(\frac{Q_{\ell}\big(|y - \mu| / \sigma\big)}{z_\ell}\Big)^2,
   \qquad \Sigma \leftarrow s\,\Sigma,

where :math:`Q_\ell` is the empirical :math:`\ell`-quantile over all validation entries and
:math:`z_\ell = \Phi^{-1}((1 + \ell)/2)` (``level = 0.9545``: :math:`z = 2`). After scaling, a
fraction :math:`\ell` of the validation entries fall inside the central :math:`\ell` band, so
the 2-sigma coverage of fresh instances is :math:`\approx \ell` when they are exchangeable with
the validation set. (:math:`Q_\ell` interpolates linearly between neighbouring order
statistics, so the validation fraction is within :math:`1/n` of :math:`\ell`, :math:`n` the
number of validation entries, rather than exactly :math:`\ell`.) This is the one step that
uses solver data: training stays physics-only.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_bool, check_int
from .._device import as_tensor
from .._posterior_args import _check_level
from .._quantile import quantile_of_all
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ._inputs import check_off_boundary
from .gicnet import check_kernel_memory
from .grids import check_points

if TYPE_CHECKING:  # pragma: no cover
    from .model import RandomGridNP

__all__ = ["interval_scale", "calibrate_variance"]


def _z(level: float) -> float:
    return math.sqrt(2.0) * torch.erfinv(torch.tensor(float(level), dtype=torch.float64)).item()


def interval_scale(
    err: Tensor | np.ndarray, sd: Tensor | np.ndarray, level: float = 0.9545
) -> float:
    r"""Variance multiplier :math:`s` that puts a fraction ``level`` of ``|err| / sd`` inside
    :math:`\pm z_\ell`; ``err, sd`` ``[*]`` of any equal shapes (``sd > 0``), tensors or
    arrays. Returns :math:`s = (q_\ell(|e|/\sigma) / z_\ell)^2 > 0`, :math:`q_\ell` the
    ``level`` quantile of the ratios."""
    level = _check_level(level)
    err = as_tensor("err", err, finite=False, real=True)
    sd = as_tensor("sd", sd, finite=False, real=True)
    if err.shape != sd.shape:
        raise ValueError(
            f"err/sd: expected equal shapes, received {tuple(err.shape)}, {tuple(sd.shape)}"
        )
    if err.numel() == 0:
        raise ValueError("err: expected at least one validation entry, received none")
    if bool((sd <= 0).any()):
        raise ValueError("sd: expected positive standard deviations")
    r = (err.abs().double() / sd.double()).flatten()
    if not bool(torch.isfinite(r).all()):
        raise ValueError("err/sd: non-finite z-scores (NaN errors or zero spread)")
    q = float(quantile_of_all(r, float(level)))
    if q == 0.0:  # the scale below is its floor, 1e-24: every variance collapses
        zeros = int((r == 0).sum())
        warnings.warn(
            f"err: {zeros} of {r.numel()} validation errors are exactly zero, so the {level:g} "
            "quantile of |err|/sd is 0 and the variances are scaled by 1e-24 (the floor): is "
            "the validation set the model's own output or its training data?",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )
    return max(q / _z(level), 1e-12) ** 2


def _arr(name: str, v: Any, model: RandomGridNP) -> Tensor:
    return as_tensor(name, v, dtype=model.dtype, device=model.device)


@torch.no_grad()
def calibrate_variance(
    model: RandomGridNP,
    x: Any,
    u: Any,
    z: Any,
    w: Any,
    *,
    level: float = 0.9545,
    parameters: bool = True,
    x_inverse: Any = None,
    u_inverse: Any = None,
    batch: int = 250,
) -> dict[str, float]:
    r"""Fit and set ``model.variance_scale`` on ``V`` validation instances.

    ``x [N, dim_x]`` (``[N]`` in 1-D) reference points, ``u [V, N]`` reference solutions there,
    ``z [V, dim_z]`` true parameters, ``w [V, dim_w]`` known inputs. The field scale uses the
    points off the Dirichlet boundary (:math:`D(x) \ne 0`); with
    ``parameters=True`` the parameter scale uses GICNet on the same interior points, or on
    per-instance observation sets ``x_inverse [V, M, dim_x]``, ``u_inverse [V, M]`` when given
    (use the layout the model will be queried with: the scale depends on it).

    Returns ``{"field": s_u, "parameters": s_z, "coverage_field_raw": ...,
    "coverage_parameters_raw": ...}`` (raw = before scaling, on the validation set: the
    fraction of entries with :math:`|y - \mu| \le z_\ell\,\sigma`, the central ``level``
    band, which is the 2-sigma band only at the default ``level``; the field's over the points
    off the boundary, the parameters' over all ``V x dim_z`` entries); with
    ``parameters=False``, ``s_z`` is the parameter scale kept in force and there is no
    ``"coverage_parameters_raw"``.
    ``parameters`` is a bool; ``x_inverse``/``u_inverse`` need ``parameters=True`` (they
    would have no effect otherwise, so they are refused).
    """
    level = _check_level(level)
    batch = check_int("batch", batch, minimum=1)
    parameters = check_bool("parameters", parameters)
    if not parameters and (x_inverse is not None or u_inverse is not None):
        raise ValueError(
            "x_inverse/u_inverse: only used for the parameter scale; they have no effect with "
            "parameters=False"
        )
    xt, ut, zt, wt = (_arr(n, v, model) for n, v in (("x", x), ("u", u), ("z", z), ("w", w)))
    if xt.ndim not in (1, 2):
        raise ValueError(
            f"x: expected shape [N, dim_x] ([N] in 1-D) of reference points, received "
            f"{tuple(xt.shape)}"
        )
    if xt.ndim == 1:
        xt = xt.unsqueeze(-1)
    if ut.ndim != 2 or ut.shape[1] != xt.shape[0]:
        raise ValueError(
            f"u: expected shape [V, {xt.shape[0]}] (one value per point), "
            f"received {tuple(ut.shape)}"
        )
    if zt.ndim != 2 or wt.ndim != 2 or zt.shape[0] != ut.shape[0] or wt.shape[0] != ut.shape[0]:
        # a scalar w was an IndexError (tuple index out of range)
        raise ValueError(
            f"z/w: expected shapes [{ut.shape[0]}, dim_z] and [{ut.shape[0]}, dim_w] (one row "
            f"per validation instance), received {tuple(zt.shape)}, {tuple(wt.shape)}"
        )
    if ut.shape[0] < 2:
        raise ValueError(f"u: expected at least 2 validation instances, received {ut.shape[0]}")
    old = dict(model.variance_scale)
    model.variance_scale = {"field": 1.0, "parameters": 1.0}
    try:
        means, sds = [], []
        for i in range(0, ut.shape[0], batch):
            post = model.posterior(xt, z=zt[i : i + batch], w=wt[i : i + batch])
            means.append(post.mean)
            sds.append(post.variance.clamp_min(0).sqrt())
        mean, sd = torch.cat(means), torch.cat(sds)
        _, dd = model.problem.transform(xt.unsqueeze(0).expand(wt.shape[0], -1, -1), wt)
        keep = (dd.abs() >= 1e-6).all(0) & (sd > 0).all(0)
        if not bool(keep.any()):
            raise ValueError("x: every point lies on the Dirichlet boundary (zero spread)")
        err = ut[:, keep] - mean[:, keep]
        sd_k = sd[:, keep]
        zl = _z(level)
        out = {
            "field": interval_scale(err, sd_k, level),
            "coverage_field_raw": float((err.abs() <= zl * sd_k).double().mean()),
        }
        s_z = old["parameters"]  # parameters=False keeps the parameter scale in force
        if parameters:
            if (x_inverse is None) != (u_inverse is None):
                raise ValueError("x_inverse/u_inverse: give both or neither")
            if x_inverse is None:
                xi, ui = xt[keep].expand(ut.shape[0], -1, -1), ut[:, keep]
            else:
                xi, ui = _arr("x_inverse", x_inverse, model), _arr("u_inverse", u_inverse, model)
                if xi.ndim != 3 or xi.shape[:2] != ui.shape or ui.shape[0] != ut.shape[0]:
                    raise ValueError(
                        f"x_inverse/u_inverse: expected [{ut.shape[0]}, M, dim_x] and "
                        f"[{ut.shape[0]}, M], received {tuple(xi.shape)}, {tuple(ui.shape)}"
                    )
                # refused here, by the argument's name and with the set's index among all V
                # (GICNet's own check named x and counted the sets of one batch of calls)
                p = model.problem
                check_points("x_inverse", xi, p.lower, p.upper)
                check_off_boundary("x_inverse", xi, p.transform(xi, wt)[1])
            # the sets of one call: named by the arguments that size them, not by GICNet's x
            sets = "x" if x_inverse is None else "x_inverse"
            check_kernel_memory(
                f"{sets}/batch",
                model.inverse_net,
                min(batch, ui.shape[0]),
                ui.shape[1],
                dtype=model.dtype,
                device=model.device,
                alternative=f"use a smaller batch or fewer points in {sets}",
            )
            pm, ps = [], []
            for i in range(0, ui.shape[0], batch):
                q = model.parameter_posterior(
                    xi[i : i + batch], ui[i : i + batch], wt[i : i + batch]
                )
                pm.append(q.mean)
                ps.append(q.variance.clamp_min(0).sqrt())
            ez, sz = zt - torch.cat(pm), torch.cat(ps)
            s_z = interval_scale(ez, sz, level)
            out["parameters"] = s_z
            out["coverage_parameters_raw"] = float((ez.abs() <= zl * sz).double().mean())
    except BaseException:  # Ctrl-C too: the scales in force before the call stay
        model.variance_scale = old
        raise
    model.variance_scale = {"field": out["field"], "parameters": s_z}
    out["parameters"] = s_z  # parameters=False: the scale kept in force
    return out


def warn_stale_calibration(model: Any, where: str, output: str) -> None:
    """A ``UserWarning`` at the user's line when the variance multiplier of ``output`` in
    force on ``model`` (a ``RandomGridNP``) was fitted by its ``calibrate`` at another
    ``step_count`` (a fit since, or a load and a fit): it scales variances of weights it was
    not fitted to. The message names the step of the calibration, not the current one: a loop
    that trains on and asks for a posterior each time is shown it once."""
    at = model._calibrated_at.get(output)
    if at is None or at == model.step_count or model.variance_scale[output] == 1.0:
        return
    warnings.warn(
        f"{where}: the variance scale in force (variance_scale[{output!r}] = "
        f"{model.variance_scale[output]:.4g}) was fitted by calibrate() at step {at}, and the "
        "model has trained since: it was made for other weights. "
        "Call calibrate(x, u, z, w) again on validation instances (or set "
        f"variance_scale[{output!r}] = 1.0 to drop it)",
        BayesphysUserWarning,
        stacklevel=user_stacklevel(),
    )
