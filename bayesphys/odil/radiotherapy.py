r"""Radiotherapy target volumes (PREDICT-GBM protocol, as used by GliODIL).

* :func:`standard_margin_plan` -- the tumour core dilated by a Euclidean margin (15 mm clinical
  standard), clipped to the brain;
* :func:`model_plan` -- the iso-volumetric plan: the ``volume`` brain voxels with the highest
  model score (a posterior quantile of the tumour-cell map);
* :func:`recurrence_coverage` -- :math:`|R \cap P| / |R|` for a recurrence mask :math:`R`.

All masks are boolean tensors ``[*grid]`` on the same grid.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, check_real
from .glioma_inputs import label_values

__all__ = ["standard_margin_plan", "model_plan", "recurrence_coverage"]


def _same_grid(**arrays: Tensor) -> None:
    """Clear error unless every array is a tensor of one common grid shape."""
    shapes = {}
    for name, a in arrays.items():
        if not isinstance(a, Tensor):
            raise TypeError(f"{name}: expected a Tensor, received {type(a).__name__}")
        shapes[name] = tuple(a.shape)
    if len(set(shapes.values())) > 1:
        got = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ValueError(f"expected masks on one grid, received {got}")


def _mask(name: str, a: Tensor) -> Tensor:
    """A boolean mask; numeric 0/1 masks are converted (float masks failed in ``&``, other
    integer values were combined bit by bit, e.g. label 2 & 1 = 0)."""
    if a.dtype == torch.bool:
        return a
    if not bool(((a == 0) | (a == 1)).all()):
        raise ValueError(f"{name}: expected a boolean (or 0/1) mask, received other values")
    return a != 0


def _voxel_mm(spacing: float | Tensor | tuple, ndim: int) -> float | tuple[float, ...]:
    """The voxel size in mm: a number (a one-element real tensor or array counts as its
    number), or one size per axis of the ``ndim``-D grid (anisotropic voxels, e.g.
    ``(1, 1, 3)``), each > 0 and finite; a ``ValueError`` / ``TypeError`` naming ``spacing``
    otherwise."""
    if isinstance(spacing, (Tensor, np.ndarray)):
        complex_ = (
            spacing.is_complex() if isinstance(spacing, Tensor) else spacing.dtype.kind == "c"
        )
        if not complex_:
            if spacing.ndim > 1:
                raise ValueError(
                    f"spacing: expected a voxel size or one per axis, received shape "
                    f"{tuple(spacing.shape)}"
                )
            # a 0-d tensor, as GliomaModel's own spacing check takes
            spacing = spacing.item() if spacing.ndim == 0 else spacing.tolist()
    if isinstance(spacing, (tuple, list)):
        if len(spacing) == 1:
            spacing = spacing[0]
        elif len(spacing) != ndim:
            raise ValueError(
                f"spacing: expected one voxel size, or one per axis of the {ndim}-D grid, "
                f"received {len(spacing)} sizes {list(spacing)}"
            )
        else:
            return tuple(
                check_real(f"spacing[{k}]", v, minimum=0.0, strict=True)
                for k, v in enumerate(spacing)
            )
    return check_real("spacing", spacing, minimum=0.0, strict=True)


def _distance_mm(mask: Tensor, spacing: float | tuple[float, ...]) -> Tensor:
    from scipy import ndimage

    m = mask.detach().cpu().numpy().astype(bool)
    d = ndimage.distance_transform_edt(~m, sampling=spacing)
    return torch.as_tensor(d, dtype=torch.float64, device=mask.device)


def standard_margin_plan(
    labels: Tensor,
    brain: Tensor,
    spacing: float | Tensor | tuple[float, ...],
    margin_mm: float = 15.0,
) -> Tensor:
    r"""Core (label 2; label >= 1 if no core) dilated by ``margin_mm`` (Euclidean), in the brain.

    ``labels``, ``brain`` ``[*grid]``: labels integers in {0, 1, 2} (anything else, NaN
    included, is refused), ``brain`` a boolean or 0/1 mask; ``spacing`` the voxel size in mm
    (> 0; a number or a one-element tensor), or one size per axis of the grid for anisotropic
    voxels (e.g. ``(1.0, 1.0, 3.0)`` for a scan of 3 mm slices on its own grid): the margin is
    the Euclidean distance in mm, :math:`\sqrt{\sum_k (h_k \Delta i_k)^2} \le` ``margin_mm``."""
    _same_grid(labels=labels, brain=brain)
    spacing = _voxel_mm(spacing, labels.ndim)
    margin_mm = check_real("margin_mm", margin_mm, minimum=0.0)
    labels = label_values(labels)
    brain = _mask("brain", brain)
    core = labels == 2
    if int(core.sum()) == 0:
        core = labels > 0
    if int(core.sum()) == 0:
        raise ValueError("labels: no tumour voxel (label >= 1) to put a margin around")
    return (_distance_mm(core, spacing) <= margin_mm) & brain


def model_plan(score: Tensor, brain: Tensor, volume: int) -> Tensor:
    r"""Iso-volumetric plan (PREDICT-GBM ``topk_plan``): the ``volume`` voxels of ``brain`` with
    the highest ``score`` (e.g. a posterior quantile of the tumour-cell map).

    If some but fewer than ``volume`` brain voxels have a positive score, the rest are the
    brain voxels nearest (Euclidean) to the positive region -- PREDICT-GBM's distance-fade
    fallback, applied only beyond the predicted support so the ranking inside it is kept. That
    distance is in voxel index units, :math:`\sqrt{\sum_k \Delta i_k^2}` (as PREDICT-GBM's
    ``distance_transform_edt`` without ``sampling``; ``model_plan`` has no voxel size): on
    anisotropic voxels it is not the distance in mm that :func:`standard_margin_plan` uses.
    Without a positive support, a score that ties across the plan's boundary (e.g. all zero) is
    refused (``ValueError``): the plan would be the top-k's tie order.

    ``score`` ``[*grid]`` real, finite inside the brain; ``brain`` ``[*grid]`` a boolean or 0/1
    mask (as in :func:`standard_margin_plan`); ``volume`` an int in ``[0, |brain|]``.
    """
    from scipy import ndimage

    _same_grid(score=score, brain=brain)
    # as standard_margin_plan: other values (a probability map, a label map) were read as
    # "brain > 0" and NaN as outside the brain, silently
    brain = _mask("brain", brain)
    n_brain = int(brain.sum())
    volume = check_int("volume", volume, minimum=0)
    if volume > n_brain:
        raise ValueError(
            f"volume: expected an int in [0, {n_brain}] (the brain's voxels), received {volume!r}"
        )
    if score.is_complex():  # the cast below dropped the imaginary part with only a warning
        raise TypeError(f"score: expected real values, received complex ({score.dtype})")
    sc = score.detach().to(torch.float64)
    if not bool(torch.isfinite(sc[brain]).all()):
        raise ValueError("score: expected finite values inside the brain")
    pos = (sc > 0) & brain
    if 0 < volume < n_brain and not bool(pos.any()):
        # no positive support for the distance fallback to grow from: a tie across the plan's
        # boundary (e.g. an all-zero score) would be broken by the top-k's tie order
        top = torch.sort(sc[brain], descending=True).values
        if float(top[volume - 1]) == float(top[volume]):
            raise ValueError(
                f"score: expected a positive support or scores that rank the plan's voxels; "
                f"the {volume}-th highest brain score ({float(top[volume - 1]):g}) ties with "
                "the next, so the plan would be arbitrary voxels"
            )
    key = sc
    if 0 < int(pos.sum()) < int(volume):
        d = ndimage.distance_transform_edt(~pos.cpu().numpy())
        dist = torch.as_tensor(d, dtype=torch.float64, device=sc.device)
        key = torch.where(pos, sc, -dist)
    s = torch.where(brain, key, torch.full_like(key, -math.inf))
    idx = torch.topk(s.reshape(-1), int(volume)).indices
    plan = torch.zeros(s.numel(), dtype=torch.bool, device=s.device)
    plan[idx] = True
    return plan.reshape(s.shape)


def recurrence_coverage(plan: Tensor, recurrence: Tensor) -> float:
    """``|recurrence ∩ plan| / |recurrence|`` (1 if there is no recurrence); boolean masks
    ``[*grid]`` on one grid (0/1-valued numeric masks are read as boolean ones)."""
    _same_grid(plan=plan, recurrence=recurrence)
    plan, recurrence = _mask("plan", plan), _mask("recurrence", recurrence)
    n = int(recurrence.sum())
    return 1.0 if n == 0 else float((plan & recurrence).sum()) / n
