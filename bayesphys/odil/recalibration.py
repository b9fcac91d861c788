r"""Recalibration of the glioma Laplace posterior on simulated patients: per-parameter shift and
split-conformal sd scale.

Why: the Laplace posterior of :math:`\theta = (\log D_w, \log\rho, x_0, y_0[, z_0])` is read
from a segmentation likelihood that only approximates how labels arise (hard thresholds of the
tumour-cell map, modelled by probit noise of width :math:`\sigma_s`). On simulated patients the
mode is biased along the :math:`D_w/\rho` trade-off (sharper fronts give larger probit margins)
and the focus intervals are too wide (docs/odil_notes.md, B3). A map per parameter, fitted on
simulated patients that are *not* the ones evaluated, corrects both.

With held-out z-scores :math:`z_{ij} = (\hat\theta_{ij} - \theta_{ij}) / \sigma_{ij}` of
:math:`n` patients and parameter :math:`j`:

.. math::
    b_j = \overline{z_{\cdot j}}, \qquad
    s_j = \hat q_{\lceil (n+1)\alpha\rceil / n}\big(|z_{\cdot j} - b_j|\big)
          \big/ \Phi^{-1}\big(\tfrac{1+\alpha}{2}\big),

and the recalibrated posterior is :math:`\mathcal N(\hat\theta - b\odot\sigma,\ S\Sigma S)`,
:math:`S = \operatorname{diag}(s)` (:meth:`~bayesphys.odil.GliomaModel.recalibrate`). Its new
z-score is :math:`(z - b)/s`. With ``shift=False`` (:math:`b = 0`, widths only) the central
:math:`\alpha` interval covers at least :math:`\alpha` of exchangeable new patients
(split-conformal; :meth:`bayesphys.diagnostics.Recalibrator.from_z` one parameter at a time).
With the shift (the default) the guarantee is only approximate: :math:`b` is the mean of the
same scores, so the residuals :math:`z - b` are in-sample and the interval under-covers by
:math:`O(1/n)` (simulated, :math:`\alpha = 0.9`, Gaussian scores: 0.874 / 0.888 / 0.899 at
:math:`n = 10 / 20 / 100`; the benchmark uses :math:`n = 100`). A full-conformal version with
leave-one-out scores restores the guarantee but was not adopted, since it would move the
committed B3 figures without a rerun.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_bool, check_real
from .._device import ArrayLike, as_tensor
from ..diagnostics.recalibrate import Recalibrator

__all__ = ["fit_recalibration_map"]


def fit_recalibration_map(
    z: ArrayLike, level: float = 0.9, *, shift: bool = True
) -> tuple[Tensor, Tensor]:
    r"""Per-parameter ``(shift b [p], sd scale s [p])`` from held-out z-scores ``z [n, p]``
    (module docstring); ``z`` a tensor, array or nested list (converted to float64). Raises on
    NaN, fewer than 2 rows, or too few rows for a finite split-conformal scale (fewer than 9 at
    ``level = 0.9``); ``level`` a number in (0, 1), ``shift`` a bool, ``p >= 1``."""
    # scores that required grad: torch warned of a tensor read as a float (the map is a constant)
    z = as_tensor("z", z, dtype=torch.float64, finite=False).detach()
    level = check_real("level", level)  # a string failed in float() without the name
    shift = check_bool("shift", shift)
    if z.ndim != 2 or z.shape[0] < 2 or z.shape[1] < 1:
        raise ValueError(f"z: expected shape [n >= 2, p >= 1], received {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError("z: expected finite z-scores, found NaN or inf")
    # on z's device, both of them (a CUDA z gave a CPU scale and, without shift, a CPU shift)
    b = z.mean(0) if shift else torch.zeros(z.shape[1], dtype=torch.float64, device=z.device)
    s = torch.tensor(
        [
            Recalibrator.from_z(z[:, j] - b[j], method="conformal", level=level).scale
            for j in range(z.shape[1])
        ],
        dtype=torch.float64,
        device=z.device,
    )
    return b, s
