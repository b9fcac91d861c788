r"""The residuals of a :class:`~bayesphys.odil.GliomaModel` and their tangent-linear Jacobian
(Lipkova et al., IEEE TMI 2019; Balcerak et al., GliODIL, arXiv 2312.05063; the noise model
is ours).

Segmentation labels are probit thresholds of :math:`c(T)`: for each threshold
:math:`\theta_k` and brain voxel :math:`i` the residual
:math:`\sqrt{-2\log\Phi(s(c_i-\theta_k)/\sigma_s)}` (:math:`s = \pm1`), PET
:math:`(s_{pet} c_i - \mathrm{pet}_i)/\sigma_{pet}` on lesion voxels; every data residual is
divided by :math:`\sqrt\kappa`, :math:`\kappa = (\lambda/h)^d` voxels counted as one
observation. The Jacobian over :math:`\theta` ``[2 + K d]`` comes from one tangent-linear
forward solve of the Fisher-Kolmogorov scheme with all ``2 + K d`` tangents at once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..problems.fisher_kolmogorov import fk_forward_tangent
from ._focal import FOCAL_WIDTH_MM, multifocal_initial_condition
from ._forward_mode import batched_jvp, jacfwd

if TYPE_CHECKING:
    from .glioma import GliomaModel

__all__ = ["data_residuals", "tangent_jacobian"]


def data_residuals(model: GliomaModel, c: Tensor) -> dict[str, Tensor]:
    r"""The data residuals of ``model`` at the crop field ``c [*crop]``: ``seg1``, ``seg2``
    (probit, brain voxels, ``[n_brain]``) and ``pet`` (lesion voxels, ``[n_lesion]``, with a
    PET map), in the module docstring's form and each divided by :math:`\sqrt\kappa`. The
    probit root is taken as :math:`\sqrt{f + 10^{-12}} - 10^{-6}`, :math:`f =
    -2\log\Phi(\cdot)` (0 at :math:`f = 0`, with a finite slope there, where :math:`\sqrt f`
    has none): its square is :math:`f` to within :math:`2\cdot 10^{-6}\sqrt f`, so the loss
    is the negative log likelihood to that accuracy."""
    seg_sd, pet_sd, kappa = model._noise()  # config's settings checked at use
    scale = 1.0 / math.sqrt(kappa)
    m = model._brain > 0
    out = {}
    for k, th in zip((1, 2), model._thresholds()):
        sgn = (model._labels[m] >= k).to(model.dtype) * 2 - 1
        z = sgn * (c[m] - th) / seg_sd
        f = -2 * torch.special.log_ndtr(z)
        out[f"seg{k}"] = scale * (torch.sqrt(f + 1e-12) - 1e-6)
    if model._pet is not None:
        lm = model._labels > 0
        out["pet"] = scale * (model._setting("pet_scale") * c[lm] - model._pet[lm]) / pet_sd
    return out


def tangent_jacobian(model: GliomaModel, theta: Tensor) -> tuple[Tensor, Tensor]:
    r"""Residual vector ``r [m]`` of ``model`` at ``theta [2 + K d]`` and its Jacobian
    ``[m, 2 + K d]`` by the tangent-linear FK model (one batched forward pass instead of
    ``2 + K d`` forward-mode AD passes)."""
    cfg = model.config
    theta = model._theta(theta).detach()
    p = theta.numel()
    foci = model.foci(theta)
    c0, g = multifocal_initial_condition(model.shape, foci, cfg["spacing"], origin=model.origin)
    # d c0 / d focus_jk = 1[j = argmax] g_j (x_k - focus_jk) / w^2   (w = 3 mm)
    axes = [
        model.origin[k]
        + (torch.arange(n, dtype=model.dtype, device=model.device) + 0.5) * cfg["spacing"]
        for k, n in enumerate(model.shape)
    ]
    grids = torch.meshgrid(*axes, indexing="ij")
    dc0 = torch.zeros((p, *model.shape), dtype=model.dtype, device=model.device)
    arg = g.argmax(0)
    for j in range(model.n_foci):
        gj = torch.where(arg == j, g[j], torch.zeros_like(g[j]))
        for k in range(model.ndim):
            dc0[2 + j * model.ndim + k] = gj * (grids[k] - foci[j, k]) / FOCAL_WIDTH_MM**2
    dw, rho = torch.exp(theta[0]), torch.exp(theta[1])
    e = torch.eye(p, dtype=model.dtype, device=model.device)
    c, dc = fk_forward_tangent(
        c0,
        dc0,
        model.faces,
        dw,
        rho,
        dw * e[:, 0],
        rho * e[:, 1],
        t_end=cfg["t_end"],
        steps=model.steps,
        spacing=cfg["spacing"],
        tissue=model._brain,
        scheme=cfg.get("time_scheme", "euler"),
        # steps are sized for d_max (stable_steps); fit reports a D_w above it
        check_stability=False,
    )

    def data_vec(cc):
        return torch.cat([v.reshape(-1) for v in model._data_residuals(cc).values()])

    r_data = data_vec(c)
    # one batched forward-mode pass over the p tangents (log_ndtr has no forward-AD
    # formula: its Python decomposition now runs once, not p times)
    j_data = batched_jvp(data_vec, c, dc[:p])
    r_prior = model._prior_residuals(theta)
    # jacfwd promotes the 0-d slices theta[0], theta[1] combined with Python floats to
    # float64 whatever theta's dtype: cast back so float32 models stay float32
    j_prior = jacfwd(model._prior_residuals, theta).to(j_data.dtype)
    return torch.cat([r_data, r_prior]), torch.cat([j_data, j_prior], 0)
