r"""Input checks and the solver domain of :class:`~bayesphys.odil.GliomaModel`.

Segmentations are integer maps ``[*grid]`` (``d`` = 2 or 3) with 0 (none), 1 (FLAIR edema),
2 (T1Gd core). The model is solved on a crop of the grid around the lesion: its bounding box
grown by a margin in mm, or scaled about its centre (GliODIL's ``trim_scale = 1.5``; Balcerak
et al., arXiv 2312.05063).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import check_real
from .._device import as_tensor, check_finite

__all__ = ["checked_labels", "label_values", "lesion_crop"]


def checked_labels(labels: Any, shape: Sequence[int], device: torch.device) -> Tensor:
    """Segmentation as a ``long`` tensor ``[*shape]`` with values in {0, 1, 2} and a lesion;
    a clear ``ValueError`` otherwise (other shape, non-integer values, unknown labels, none)."""
    shape = tuple(shape)
    lab = as_tensor("labels", labels, device=device)
    if tuple(lab.shape) != shape:
        raise ValueError(
            f"labels: expected the tissue maps' shape {shape}, received {tuple(lab.shape)}"
        )
    lab = label_values(lab)
    if int((lab > 0).sum()) == 0:
        raise ValueError("labels: expected a lesion (some label 1 or 2), received none")
    return lab


def label_values(lab: Tensor) -> Tensor:
    """``lab`` as ``long`` after checking it holds finite integers in {0, 1, 2} (a clear
    ``ValueError`` naming ``labels`` otherwise)."""
    check_finite("labels", lab)
    if lab.is_floating_point() and not bool((lab == lab.round()).all()):
        raise ValueError("labels: expected integer labels 0/1/2, received non-integer values")
    lab = lab.long()
    bad = sorted(set(torch.unique(lab).tolist()) - {0, 1, 2})
    if bad:
        raise ValueError(f"labels: expected values in {{0, 1, 2}}, received also {bad}")
    return lab


def lesion_crop(
    labels: Tensor,
    spacing: float,
    *,
    crop_margin_mm: float | None = 24.0,
    crop_scale: float | None = None,
) -> tuple[slice, ...]:
    """The solver domain: slices of the grid ``labels [*grid]`` around the lesion (labels > 0).

    ``crop_scale`` (>= 1): the lesion's bounding box scaled about its centre; else
    ``crop_margin_mm`` (>= 0 mm): the box grown by this margin; ``None`` for both: the whole
    grid. ``spacing`` (> 0) is the voxel size in mm.
    Always clipped to the grid.
    """
    shape, nd = tuple(labels.shape), labels.ndim
    spacing = check_real("spacing", spacing, minimum=0.0, strict=True)
    if crop_scale is not None:
        crop_scale = check_real("crop_scale", crop_scale, minimum=1.0)
        nz = (labels > 0).nonzero().to(torch.float64)
        lo, hi = nz.min(0).values, nz.max(0).values + 1
        mid, half = (lo + hi) / 2, (hi - lo) / 2 * crop_scale
        return tuple(
            slice(
                max(0, int(math.floor(mid[k] - half[k]))),
                min(shape[k], int(math.ceil(mid[k] + half[k]))),
            )
            for k in range(nd)
        )
    if crop_margin_mm is None:
        return tuple(slice(0, n) for n in shape)
    crop_margin_mm = check_real("crop_margin_mm", crop_margin_mm, minimum=0.0)
    nz = (labels > 0).nonzero()
    pad = int(math.ceil(crop_margin_mm / spacing))
    return tuple(
        slice(max(0, int(nz[:, k].min()) - pad), min(shape[k], int(nz[:, k].max()) + pad + 1))
        for k in range(nd)
    )
