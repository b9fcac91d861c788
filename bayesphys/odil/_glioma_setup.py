r"""Construction of a :class:`~bayesphys.odil.GliomaModel` (Balcerak et al., GliODIL, arXiv
2312.05063; Lipkova et al. 2019): the tissue maps, labels, PET map and settings checked, the
solver's crop around the lesion, the tissue faces and stable time steps of the
Fisher-Kolmogorov scheme, the starting foci (core centroid, a given guess, or k-means centres)
and the names of :math:`\theta` ``[2 + K d]``; and the same model on another crop.
"""

from __future__ import annotations

import copy
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._built_settings import check_built_settings, shape_settings
from .._checkpoint_rebuild import in_quiet_rebuild, quiet_rebuild
from .._checks import did_you_mean
from .._device import as_tensor, model_device, own_memory, single_or_double
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..problems.fisher_kolmogorov import SCHEMES, stable_steps, tissue_faces
from ._focal import FOCAL_WIDTH_MM, kmeans_foci
from .glioma_inputs import CONFIG_KEYS, checked_labels, checked_settings, lesion_crop

if TYPE_CHECKING:
    from .glioma import GliomaModel

__all__ = [
    "BUILT_SETTINGS",
    "MAX_MODEL_STEPS",
    "MAX_VOXEL_FOCI",
    "check_built",
    "init_glioma",
    "recropped",
]

#: most explicit steps one forward solve of a model may take: a fit solves it dozens of times
#: (the phantom and atlas cases take 32 to a few thousand; t_end in seconds instead of days
#: asked for millions, and the fit ran for days without a word)
MAX_MODEL_STEPS = 200_000

#: the widest voxel a model takes, in focal widths (3 mm): 30 mm, where a focus farthest
#: from the cell centres (2-D) starts the tumour at 0.5 exp(-25) ~ 7e-12 (phantom and
#: atlas cases use 1 to 8 mm)
MAX_VOXEL_FOCI = 10.0

#: how far ``wm + gm`` may exceed 1 in a voxel: the rounding of maps stored as bytes (SPM's
#: ``c1`` / ``c2`` in steps of 1/255 sum to at most 1 + 1/255) or resampled apart; more is
#: not a probability of one voxel (a map given twice, a mask beside a probability map)
TISSUE_SUM_TOL = 0.05

#: the settings a model reads only at construction: its crop, the tissue faces, the number of
#: time steps and the number of foci are derived from them (the rest of ``config`` is read at
#: every use and may be assigned between fits)
BUILT_SETTINGS = ("spacing", "t_end", "dg_ratio", "d_max", "crop_margin_mm", "crop_scale", "n_foci")


def init_glioma(
    model: GliomaModel,
    wm: Any,
    gm: Any,
    labels: Any,
    *,
    spacing: float,
    th_up: float,
    th_down: float,
    t_end: float,
    dg_ratio: float,
    pet: Any,
    pet_scale: float,
    pet_sigma: float,
    seg_sigma: float,
    noise_corr_mm: float,
    model_error: float,
    d_max: float,
    time_scheme: str,
    prior: dict | None,
    focus_init: Any,
    n_foci: int,
    crop_margin_mm: float | None,
    crop_scale: float | None,
    device: str | torch.device | None,
    dtype: torch.dtype | str | None,
    seed: int | None,
) -> None:
    """Build ``model`` from the arguments of :class:`~bayesphys.odil.GliomaModel` (its docstring
    states them and their checks); no posterior yet."""
    model.device = model_device(device)
    # the fit's Cholesky / lstsq and the Laplace inverse have no half-precision kernels
    model.dtype = single_or_double(dtype, "the fit's linear algebra has no half precision")
    model.wm = real_map(model, "wm", wm)
    model.gm = real_map(model, "gm", gm)
    if model.wm.ndim not in (2, 3):
        raise ValueError(f"wm: expected a 2-D or 3-D map, received shape {tuple(model.wm.shape)}")
    shape = tuple(model.wm.shape)
    if tuple(model.gm.shape) != shape:
        raise ValueError(f"gm: expected shape {shape} (as wm), received {tuple(model.gm.shape)}")
    for name, m in (("wm", model.wm), ("gm", model.gm)):
        # a negative map anti-diffused, one above 1 broke the stable time step (d_max)
        if bool(((m < 0) | (m > 1)).any()):
            raise ValueError(
                f"{name}: expected tissue probabilities in [0, 1], received values in "
                f"[{float(m.min()):.3g}, {float(m.max()):.3g}]"
            )
    check_tissue_sum(model.wm, model.gm)
    lab = own_memory(checked_labels(labels, shape, model.device), labels)
    model.labels = lab
    st = checked_settings(
        ndim=len(shape),
        th_up=th_up,
        th_down=th_down,
        spacing=spacing,
        t_end=t_end,
        dg_ratio=dg_ratio,
        seg_sigma=seg_sigma,
        d_max=d_max,
        pet_scale=pet_scale,
        pet_sigma=pet_sigma,
        noise_corr_mm=noise_corr_mm,
        model_error=model_error,
        n_foci=n_foci,
        crop_margin_mm=crop_margin_mm,
        crop_scale=crop_scale,
        seed=seed,
        prior=prior,
    )
    th_up, th_down, spacing = st.th_up, st.th_down, st.spacing
    t_end, dg_ratio, seg_sigma = st.t_end, st.dg_ratio, st.seg_sigma
    d_max, pet_scale, pet_sigma = st.d_max, st.pet_scale, st.pet_sigma
    noise_corr_mm, model_error, n_foci = st.noise_corr_mm, st.model_error, st.n_foci
    crop_margin_mm, crop_scale, seed = st.crop_margin_mm, st.crop_scale, st.seed
    prior = st.prior
    if time_scheme not in SCHEMES:
        raise ValueError(
            f"time_scheme: expected one of {SCHEMES}, received "
            f"{time_scheme!r}{did_you_mean(time_scheme, SCHEMES)}"
        )
    model.pet = None
    if pet is not None:
        model.pet = real_map(model, "pet", pet)
        if tuple(model.pet.shape) != shape:
            raise ValueError(f"pet: expected shape {shape}, received {tuple(model.pet.shape)}")
    model.brain = ((model.wm + model.gm) >= 0.1).to(model.dtype)
    if bool(((lab > 0) & (model.brain == 0)).any()):
        raise ValueError("labels: lesion voxels found outside the brain (wm + gm < 0.1)")
    model.config = {
        "spacing": float(spacing),
        "th_up": float(th_up),
        "th_down": float(th_down),
        "t_end": float(t_end),
        "dg_ratio": float(dg_ratio),
        "pet_scale": float(pet_scale),
        "pet_sigma": float(pet_sigma),
        "seg_sigma": float(seg_sigma),
        # as given: at least one voxel is counted where it is used (GliomaModel._noise)
        "noise_corr_mm": float(noise_corr_mm),
        "model_error": float(model_error),
        "d_max": float(d_max),
        "time_scheme": time_scheme,
        "prior": prior,
        "seed": seed,
        "crop_margin_mm": crop_margin_mm,
        "crop_scale": crop_scale,
        "n_foci": n_foci,
    }
    model._built = shape_settings(model.config, BUILT_SETTINGS)
    model.n_foci = n_foci
    model.ndim = len(shape)
    model.full_shape = shape
    model.crop = lesion_crop(lab, spacing, crop_margin_mm=crop_margin_mm, crop_scale=crop_scale)
    model.origin = [sl.start * spacing for sl in model.crop]
    # copies, not views: a view pickles its whole map (a model sent to another process
    # carried every full-volume map twice)
    model._wm, model._gm = model.wm[model.crop].clone(), model.gm[model.crop].clone()
    model._brain, model._labels = model.brain[model.crop].clone(), lab[model.crop].clone()
    model._pet = None if model.pet is None else model.pet[model.crop].clone()
    model.shape = tuple(model._wm.shape)
    model.faces = tissue_faces(model._wm, model._gm, dg_ratio=dg_ratio)
    check_mm_scan(shape, spacing)
    model.steps = stable_steps(t_end, d_max, spacing, model.ndim)
    check_step_count(model.steps, t_end=t_end, d_max=d_max, spacing=spacing)
    lesion = (lab > 0).nonzero().to(model.dtype)
    core = (lab == 2).nonzero().to(model.dtype)
    cen = (core if len(core) else lesion).mean(0)
    model.centroid = (cen + 0.5) * spacing
    if focus_init is not None:
        # a constant of the model, as the maps (real_map)
        f = as_tensor("focus_init", focus_init, dtype=model.dtype, device=model.device).detach()
        if f.numel() != n_foci * model.ndim:
            raise ValueError(
                f"focus_init: expected {n_foci} x {model.ndim} coordinates (mm), received "
                f"shape {tuple(f.shape)}"
            )
        for fk in f.reshape(n_foci, model.ndim):
            check_focus(model, fk, "focus_init")
        model.focus_init = own_memory(f.reshape(-1), focus_init)
    elif n_foci == 1:
        model.focus_init = model.centroid.clone()
    else:
        pts = ((core if len(core) else lesion) + 0.5) * spacing
        if len(pts) < n_foci:
            raise ValueError(
                f"n_foci: expected at most {len(pts)} foci for this lesion, received {n_foci}"
            )
        model.focus_init = kmeans_foci(pts, n_foci).reshape(-1)
    axes = ["x0", "y0", "z0"][: model.ndim]
    if n_foci == 1:
        model.param_names = ["log_dw", "log_rho"] + axes
    else:
        model.param_names = ["log_dw", "log_rho"] + [
            f"{a}[{k}]" for k in range(n_foci) for a in axes
        ]
    model.theta = None
    model.theta_cov = None
    # (shift, scale) of the recalibration map applied to the fitted posterior, if any
    model.recalibration = None
    model.result = None
    warn_lesion_at_edge(lab)  # last: a model refused for another reason is not warned of


def warn_lesion_at_edge(labels: Tensor) -> None:
    """Warn (``UserWarning`` naming ``labels`` and the edges) when lesion voxels of
    ``labels [*grid]`` lie on the edge of the scan: the model's boundary there is closed (no
    flux, as at the skull), so a volume cropped through the tumour (or a slice kept as a 3-D
    array of one voxel along an axis) is fitted as a tumour held back at the crop, without a
    word; on a 2-D phantom cropped to the lesion's bounding box :math:`D_w` moved by about one
    posterior sd."""
    if in_quiet_rebuild():  # load / recrop: warned when the model was first built
        return
    sides = []
    for k, n in enumerate(labels.shape):
        for end, i in (("start", 0), ("end", n - 1)):
            if bool((labels.select(k, i) > 0).any()):
                sides.append(f"axis {k} {end}")
    if sides:
        warnings.warn(
            f"labels: the lesion reaches the edge of the scan ({', '.join(sides)}), where the "
            "model's boundary is closed (no flux, as at the skull): a tumour that goes on "
            "beyond a cropped volume is fitted as one held back there; give the tissue maps "
            "and labels with a margin around the lesion (crop_margin_mm, default 24 mm, sets "
            "the solver's own crop)",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )


def check_tissue_sum(wm: Tensor, gm: Tensor) -> None:
    """Refuse (``ValueError`` naming ``wm`` and ``gm``, the largest sum and a voxel where it
    is) tissue maps ``[*grid]`` whose sum exceeds 1 by more than :data:`TISSUE_SUM_TOL`: the
    white- and grey-matter probabilities of one voxel (with CSF's, 1 in all) cannot. Such maps
    (the same map given twice, a brain mask as ``gm``) were fitted without a word, with the
    diffusivity :math:`D_w(W + G/r)` of tissue that does not exist."""
    total = wm + gm
    top = float(total.max())
    if top > 1.0 + TISSUE_SUM_TOL:
        where = [int(i) for i in torch.unravel_index(total.argmax(), total.shape)]
        raise ValueError(
            f"wm, gm: expected tissue probabilities of one voxel, wm + gm <= 1 (up to "
            f"{TISSUE_SUM_TOL:g} over for rounding), received wm + gm = {top:.3g} at voxel "
            f"{where}; give each voxel's probability of white and of grey matter (with CSF's "
            "they sum to 1), e.g. divide both by max(1, wm + gm)"
        )


def check_built(model: GliomaModel, where: str) -> None:
    """Refuse (``ValueError`` naming ``where`` and the setting) a ``model.config`` whose
    settings read at construction (:data:`BUILT_SETTINGS`) were assigned afterwards: the model
    kept the crop, faces and time steps of the old values, while :meth:`~GliomaModel.load` (or
    :meth:`~GliomaModel.recrop`) rebuilt them from the new ones, so a saved model predicted
    otherwise than the one that saved it."""
    check_built_settings(model.config, getattr(model, "_built", {}), "GliomaModel", where)


def recropped(
    model: GliomaModel, *, crop_margin_mm: float | None, crop_scale: float | None
) -> GliomaModel:
    """A new model of the class of ``model`` with its data, configuration and fitted posterior
    on another solver domain (:meth:`~bayesphys.odil.GliomaModel.recrop`)."""
    check_built(model, "recrop")
    st = {k: getattr(model, k) for k in ("wm", "gm", "labels", "pet")}
    st["focus_init"] = model.focus_init.reshape(model.n_foci, model.ndim)
    cfg = model.config
    with quiet_rebuild():
        other = type(model)(
            st["wm"],
            st["gm"],
            st["labels"],
            pet=st["pet"],
            focus_init=st["focus_init"],
            **{k: cfg[k] for k in CONFIG_KEYS},
            crop_margin_mm=crop_margin_mm,
            crop_scale=crop_scale,
            device=model.device,
            dtype=model.dtype,
            seed=cfg["seed"],
        )
    # copies: an in-place edit of one model's posterior changed the other's (the tensors were
    # shared), against "returns a new model"
    other.theta, other.theta_cov = (
        None if v is None else v.clone() for v in (model.theta, model.theta_cov)
    )
    other.recalibration = (
        None if model.recalibration is None else tuple(v.clone() for v in model.recalibration)
    )
    # the fit behind that posterior, a copy (None before: save/load keep it, recrop lost it)
    other.result = copy.deepcopy(model.result)
    return other


def real_map(model: GliomaModel, name: str, value: Any) -> Tensor:
    """A finite real map in the model's dtype and device (a complex map lost its imaginary
    part with only a warning), in memory of its own (a view of the caller's map saw the
    caller's later edits: a saved model then held maps it was not fitted to), detached from
    any autograd graph (the model's data are constants: a map that required grad was kept as
    a graph node, which ``copy.deepcopy`` of the model refused)."""
    t = as_tensor(name, value, dtype=model.dtype, device=model.device).detach()
    return own_memory(t, value)


def check_focus(model: GliomaModel, f: Tensor, name: str) -> None:
    """Refuse a focus ``f [d]`` (mm, ``d`` the model's dimension) that is not inside the brain
    of ``model`` (``wm + gm >= 0.1``); ``name``: the argument, named in the refusal."""
    idx = torch.floor(f / model.config["spacing"]).long()
    inside = all(0 <= int(idx[k]) < model.full_shape[k] for k in range(model.ndim))
    if not inside or float(model.brain[tuple(idx.tolist())]) == 0:
        raise ValueError(
            f"{name}: expected a focus inside the brain (wm + gm >= 0.1), received "
            f"{[round(float(v), 2) for v in f]} mm"
        )


def check_mm_scan(shape: tuple[int, ...], spacing: float) -> None:
    """Refuse (``ValueError`` naming ``spacing``) a scan ``[*shape]`` of voxels ``spacing`` wide
    whose longest axis is narrower than the focal width (3 mm), which a brain in mm never is:
    a voxel size in metres (0.001 for 1 mm). The focus, the default prior, ``noise_corr_mm`` and
    the crop margin are in mm, so such a model fitted a tumour that covered the whole scan
    from its first step and returned the prior with no warning. Voxels wider than
    :data:`MAX_VOXEL_FOCI` focal widths (30 mm; a size in micrometres) are refused too: the
    focal Gaussian then falls between the cell centres, the initial state is zero (to
    rounding) everywhere and the fit returned the prior, again without a word."""
    if spacing > MAX_VOXEL_FOCI * FOCAL_WIDTH_MM:
        raise ValueError(
            f"spacing: expected the voxel size in mm, received {spacing:g}: voxels "
            f"{spacing / FOCAL_WIDTH_MM:.3g} times wider than the tumour's focus "
            f"({FOCAL_WIDTH_MM:g} mm wide; at most {MAX_VOXEL_FOCI:g} times are taken), whose "
            "initial state then falls between the cell centres; a size in micrometres is 1000 "
            "times too large (1 mm is spacing=1.0)"
        )
    extent = max(shape) * spacing
    if extent < FOCAL_WIDTH_MM:
        raise ValueError(
            f"spacing: expected the voxel size in mm, received {spacing:g}, which makes the "
            f"scan {extent:.3g} mm across ({max(shape)} voxels), narrower than the tumour's "
            f"focus ({FOCAL_WIDTH_MM:g} mm wide); a size in metres is 1000 times too small "
            "(1 mm is spacing=1.0)"
        )


def check_step_count(steps: int, *, t_end: float, d_max: float, spacing: float) -> None:
    """Refuse (``ValueError`` naming ``t_end``, ``d_max`` and ``spacing`` with their units) a
    model whose forward solve takes more than :data:`MAX_MODEL_STEPS` explicit steps: the
    model works in mm and days, and ``t_end`` in seconds (8.64e6 for 100 days) built a model
    of millions of steps per solve whose fit never ended."""
    if steps > MAX_MODEL_STEPS:
        raise ValueError(
            f"t_end, d_max, spacing: the forward solve needs {steps} explicit steps "
            f"(t_end={t_end:g} days, d_max={d_max:g} mm^2/day, spacing={spacing:g} mm), more "
            f"than {MAX_MODEL_STEPS}, and a fit solves it dozens of times; the "
            "model works in mm and days: check their units (100 days is t_end=100.0, not "
            "8.64e6 seconds), or use a smaller d_max or a coarser grid"
        )
