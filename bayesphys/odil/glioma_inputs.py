r"""Input checks and the solver domain of :class:`~bayesphys.odil.GliomaModel`.

Segmentations are integer maps ``[*grid]`` (``d`` = 2 or 3) with 0 (none), 1 (FLAIR edema),
2 (T1Gd core). The model is solved on a crop of the grid around the lesion: its bounding box
grown by a margin in mm, or scaled about its centre (GliODIL's ``trim_scale = 1.5``; Balcerak
et al., arXiv 2312.05063).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, check_keys, check_real, check_seed
from .._device import as_tensor, check_finite
from ..problems.glioma import check_thresholds

__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_PRIOR",
    "GliomaSettings",
    "checked_labels",
    "checked_prior",
    "checked_settings",
    "label_values",
    "lesion_crop",
]


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
    ``ValueError`` naming ``labels`` otherwise; complex labels: a ``TypeError``, their
    imaginary part was dropped with only torch's warning)."""
    if lab.is_complex():
        raise TypeError(f"labels: expected real values, received complex ({lab.dtype})")
    check_finite("labels", lab)
    if lab.is_floating_point() and not bool((lab == lab.round()).all()):
        raise ValueError("labels: expected integer labels 0/1/2, received non-integer values")
    # the values themselves, before the cast (a float 2**63 was named as -9223372036854775808)
    bad = sorted(v for v in set(torch.unique(lab).tolist()) if v not in (0, 1, 2))
    if bad:
        bad = [int(v) if isinstance(v, float) and abs(v) < 2**53 else v for v in bad]
        raise ValueError(f"labels: expected values in {{0, 1, 2}}, received also {bad}")
    return lab.long()


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


CONFIG_KEYS = (
    "spacing",
    "th_up",
    "th_down",
    "t_end",
    "dg_ratio",
    "pet_scale",
    "pet_sigma",
    "seg_sigma",
    "noise_corr_mm",
    "model_error",
    "d_max",
    "time_scheme",
    "prior",
    "n_foci",
)

DEFAULT_PRIOR = {
    "log_dw": (math.log(0.22), 1.0),
    "log_rho": (math.log(0.05), 1.0),
    "focus_sd": 15.0,
}


def checked_prior(prior: Mapping | None) -> dict:
    """The default prior updated with ``prior``; clear errors for unknown keys, non-finite
    means and non-positive sds."""
    out = dict(DEFAULT_PRIOR)
    if prior is None:
        return out
    check_keys("prior", prior, (), DEFAULT_PRIOR, hint="or None")
    for k, v in prior.items():
        if k == "focus_sd":
            out[k] = check_real("prior['focus_sd']", _number(v), minimum=0.0, strict=True)
            continue
        if isinstance(v, (str, bytes)) or not hasattr(v, "__len__") or len(v) != 2:
            raise ValueError(f"prior[{k!r}]: expected a pair (mean, sd), received {v!r}")
        out[k] = (
            check_real(f"prior[{k!r}] mean", _number(v[0])),
            check_real(f"prior[{k!r}] sd", _number(v[1]), minimum=0.0, strict=True),
        )
    return out


class GliomaSettings(NamedTuple):
    """The checked scalar settings of a :class:`~bayesphys.odil.GliomaModel`."""

    th_up: float
    th_down: float
    spacing: float
    t_end: float
    dg_ratio: float
    seg_sigma: float
    d_max: float
    pet_scale: float
    pet_sigma: float
    noise_corr_mm: float
    model_error: float
    n_foci: int
    crop_margin_mm: float | None
    crop_scale: float | None
    seed: int | None
    prior: dict


def voxel_size(spacing: Any, ndim: int | None = None) -> float:
    """The voxel size in mm, > 0 and finite: a number (or a 0-d tensor / array), or one size
    per axis of the ``ndim``-D scan when all are equal; anisotropic voxels are refused (the
    model's stencil needs isotropic ones: resample the scan first)."""
    if getattr(spacing, "ndim", None) == 0 and hasattr(spacing, "item"):
        spacing = spacing.item()
    elif isinstance(spacing, (tuple, list)) or getattr(spacing, "ndim", 0) > 0:
        try:
            sizes = [float(v) for v in spacing]
        except (TypeError, ValueError):
            raise TypeError(
                f"spacing: expected a voxel size in mm or one per axis, received {spacing!r}"
            ) from None
        if ndim is not None and len(sizes) != ndim:
            raise ValueError(
                f"spacing: expected one voxel size, or one per axis of the {ndim}-D scan, "
                f"received {len(sizes)} size{'s' * (len(sizes) != 1)} {sizes}"
            )
        for k, v in enumerate(sizes):  # NaN != NaN: [nan, nan] was called anisotropic
            check_real(f"spacing[{k}]", v, minimum=0.0, strict=True)
        if len(set(sizes)) != 1:
            raise ValueError(
                f"spacing: expected isotropic voxels (the model's stencil needs them), "
                f"received sizes {sizes}; resample the scan to isotropic voxels first (e.g. "
                "1 mm) and give that size"
            )
        spacing = sizes[0]
    return check_real("spacing", spacing, minimum=0.0, strict=True)


def _number(value: Any) -> Any:
    """The number held by a 0-d tensor or numpy array (detached), else ``value`` as given (the
    checks that follow name the argument and refuse what is not a number)."""
    if isinstance(value, (Tensor, np.ndarray)) and value.ndim == 0:
        return value.detach().item() if isinstance(value, Tensor) else value.item()
    return value


def checked_settings(
    *,
    ndim: int | None = None,
    th_up: Any,
    th_down: Any,
    spacing: Any,
    t_end: Any,
    dg_ratio: Any,
    seg_sigma: Any,
    d_max: Any,
    pet_scale: Any,
    pet_sigma: Any,
    noise_corr_mm: Any,
    model_error: Any,
    n_foci: Any,
    crop_margin_mm: Any,
    crop_scale: Any,
    seed: Any,
    prior: Any,
) -> GliomaSettings:
    """Check the scalar settings of a glioma model: thresholds in order in (0, 1); spacing,
    t_end, dg_ratio, seg_sigma, d_max, pet_scale, pet_sigma, noise_corr_mm positive and finite;
    model_error >= 0; n_foci >= 1; crop_margin_mm >= 0 and crop_scale >= 1 when given; the prior
    (:func:`checked_prior`). A ``ValueError`` / ``TypeError`` names the first bad argument.
    A 0-d tensor or array counts as its number, as for ``spacing`` (a patient saved with
    ``np.savez`` loads its scalars as 0-d arrays, which were refused as "not a real number")."""
    th_up, th_down = _number(th_up), _number(th_down)
    t_end, dg_ratio, seg_sigma, d_max = map(_number, (t_end, dg_ratio, seg_sigma, d_max))
    pet_scale, pet_sigma, noise_corr_mm = map(_number, (pet_scale, pet_sigma, noise_corr_mm))
    model_error, n_foci, seed = map(_number, (model_error, n_foci, seed))
    crop_margin_mm, crop_scale = _number(crop_margin_mm), _number(crop_scale)
    th_up, th_down = check_thresholds(th_up, th_down)
    # physical scales, noise scales and lengths: positive and finite
    spacing = voxel_size(spacing, ndim)
    t_end = check_real("t_end", t_end, minimum=0.0, strict=True)
    dg_ratio = check_real("dg_ratio", dg_ratio, minimum=0.0, strict=True)
    seg_sigma = check_real("seg_sigma", seg_sigma, minimum=0.0, strict=True)
    d_max = check_real("d_max", d_max, minimum=0.0, strict=True)
    pet_scale = check_real("pet_scale", pet_scale, minimum=0.0, strict=True)
    pet_sigma = check_real("pet_sigma", pet_sigma, minimum=0.0, strict=True)
    noise_corr_mm = check_real("noise_corr_mm", noise_corr_mm, minimum=0.0, strict=True)
    model_error = check_real("model_error", model_error, minimum=0.0)
    n_foci = check_int("n_foci", n_foci, minimum=1)
    if crop_margin_mm is not None:
        crop_margin_mm = check_real("crop_margin_mm", crop_margin_mm, minimum=0.0)
    if crop_scale is not None:
        crop_scale = check_real("crop_scale", crop_scale, minimum=1.0)
    if seed is not None:
        seed = check_seed("seed", seed)
    prior = checked_prior(prior)
    return GliomaSettings(
        th_up,
        th_down,
        spacing,
        t_end,
        dg_ratio,
        seg_sigma,
        d_max,
        pet_scale,
        pet_sigma,
        noise_corr_mm,
        model_error,
        n_foci,
        crop_margin_mm,
        crop_scale,
        seed,
        prior,
    )
