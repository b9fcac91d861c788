r"""Glioma test problems: a 2-D analytic brain phantom and synthetic patients.

* :func:`brain_phantom` -- white matter (WM), grey matter (GM) and CSF probability maps
  ``[n, n]`` of an axial-slice-like phantom: an elliptic brain with a cortical GM ribbon, two
  deep-GM nuclei, two lateral ventricles (CSF) and a midline CSF fissure, smoothed over one
  voxel; background outside the skull is neither tissue nor CSF. No atlas, nothing downloaded.
* :func:`mni_atlas` -- WM / GM / CSF probability maps of the MNI ICBM152 2009a symmetric
  template (1 mm, shipped inside the ``nilearn`` wheel; read from the installed package, nothing
  downloaded), as a 3-D volume or an axial slice, at any resolution, cropped to the brain;
  :func:`atlas_unavailable_reason` says beforehand whether it can run here (nilearn installed).
  Attribution: VS Fonov, AC Evans, RC McKinstry, CR Almli, DL Collins, "Unbiased nonlinear
  average age-appropriate brain templates from birth to adulthood", NeuroImage 47 (2009) S102;
  Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological
  Institute, McGill University (permissive licence, see the nilearn documentation).
* :func:`synthetic_patient` -- draws Fisher-Kolmogorov parameters (log-uniform
  :math:`D_w, \rho`), a focus inside white matter, grows the tumour with our explicit solver
  (:func:`bayesphys.problems.fisher_kolmogorov.fk_forward`), and observes the GliODIL/BraTS-style
  segmentation ``labels`` (2 = T1Gd core, :math:`c\ge\theta_{up}`; 1 = FLAIR edema,
  :math:`\theta_{down}\le c<\theta_{up}`; 0 = otherwise), a PET proxy
  :math:`0.75\,c + \mathcal N(0, 0.02^2)` inside the lesion, and the "future" state
  :math:`c(T + 60\,\mathrm d)` for radiotherapy evaluation.

Truth is simulated with ``refine`` times the time steps a fit takes by default (the stable
explicit step for :math:`D_w` = ``step_d`` = 1 mm²/day, or for the patient's own :math:`D_w` if
larger; ``step_d=None``: the patient's own :math:`D_w`, cheaper on large 3-D volumes), with
the Strang-split scheme (exact logistic reaction) unless ``scheme="euler"``; a fit on the same
grid then carries a small time-discretisation model error, as with real data. (Earlier versions
took ``refine`` times the stable steps of the patient's own, smaller, :math:`D_w` with explicit
Euler: for typical :math:`D_w` that is about as coarse as the fit itself, and the two time-step
errors partly cancelled; see docs/odil_notes.md, "B3, what its coverage rests on".)
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import MissingPackage, check_int, check_keys, check_real, check_seed, missing_module
from .._device import ArrayLike, as_tensor, check_finite, model_device, resolve_dtype
from .fisher_kolmogorov import fk_forward, initial_condition, stable_steps, tissue_faces

__all__ = [
    "brain_phantom",
    "mni_atlas",
    "atlas_unavailable_reason",
    "synthetic_patient",
    "segment",
    "truth_theta",
    "GLIOMA_PRIOR",
    "MAX_PATIENT_STEPS",
]

MAX_PATIENT_STEPS = 200_000
"""Most explicit steps one :func:`synthetic_patient` may take (both solves together); the
built-in studies take at most a few thousand, ``dw=1e6`` needed about 1e8 (hours)."""

GLIOMA_PRIOR = {"dw": (0.1, 0.5), "rho": (0.025, 0.1), "t_end": 100.0, "dg_ratio": 10.0}
r"""Prior boxes ``(lo, hi)`` of the synthetic glioma patients, drawn log-uniform in them
(:math:`\log D_w \sim U[\log lo, \log hi]`, not uniform): white-matter diffusivity ``dw``
(mm^2/day) and proliferation ``rho`` (1/day); ``t_end`` (days) and the white/grey diffusivity
ratio ``dg_ratio`` are fixed."""


def _smooth(a: Tensor) -> Tensor:
    k = torch.tensor([0.25, 0.5, 0.25], dtype=a.dtype, device=a.device)
    for ax in range(a.ndim):
        a = k[0] * torch.roll(a, 1, ax) + k[1] * a + k[2] * torch.roll(a, -1, ax)
    return a


def brain_phantom(
    n: int = 64,
    spacing: float = 2.0,
    *,
    dtype: torch.dtype | str = torch.float64,
    device: str | torch.device | None = "cpu",
) -> dict[str, Tensor | float]:
    """Analytic 2-D brain phantom on an ``n x n`` grid of ``spacing`` mm.

    Returns ``{"wm", "gm", "csf", "brain", "spacing"}``; maps are ``[n, n]`` in [0, 1],
    ``brain`` = (wm + gm >= 0.1) as float. Geometry scales with the field of view
    ``n * spacing`` (default 128 mm). ``dtype``: a floating dtype (or its name); ``device``:
    ``"cpu"``, ``"cuda[:N]"``, ``"auto"`` (CUDA when present), a :class:`torch.device` or
    ``None`` (the CPU).
    """
    n = check_int("n", n, minimum=16)
    spacing = check_real("spacing", spacing, minimum=0.0, strict=True)
    dtype = resolve_dtype(dtype)  # an integer dtype gave integer "probability" maps
    # "gpu" failed inside torch.arange with torch's list of device types, "cuda" without
    # CUDA with an AssertionError
    device = model_device(device)
    fov = n * spacing
    ax = (torch.arange(n, dtype=dtype, device=device) + 0.5) * spacing - fov / 2
    x, y = torch.meshgrid(ax, ax, indexing="ij")
    s = fov / 128.0

    def ell(cx, cy, a, b):
        return ((x - cx * s) / (a * s)) ** 2 + ((y - cy * s) / (b * s)) ** 2

    brain = (ell(0, 0, 52, 60) <= 1).to(dtype)
    inner = (ell(0, 0, 46, 54) <= 1).to(dtype)  # inside the cortical ribbon
    gm = brain - inner
    nuclei = ((ell(-14, -4, 6, 9) <= 1) | (ell(14, -4, 6, 9) <= 1)).to(dtype)
    gm = torch.clamp(gm + nuclei, 0, 1)
    csf = ((ell(-8, 6, 4, 14) <= 1) | (ell(8, 6, 4, 14) <= 1)).to(dtype)
    fissure = ((x.abs() <= 1.0 * s + spacing / 2) & (y < -40 * s) & (brain > 0)).to(dtype)
    csf = torch.clamp(csf + fissure, 0, 1)
    wm = torch.clamp(brain - gm - csf, 0, 1)
    gm = torch.clamp(gm - csf, 0, 1)
    wm, gm, csf = _smooth(wm), _smooth(gm), _smooth(csf)
    tissue = ((wm + gm) >= 0.1).to(dtype)
    return {"wm": wm, "gm": gm, "csf": csf, "brain": tissue, "spacing": float(spacing)}


def _compact(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``a`` (float64) as ``(codes, table)`` with ``table[codes]`` equal to ``a`` bit for bit:
    ``uint8`` codes of ``a / max(a)`` on 255 levels and the float64 value of each code, when
    every voxel's value is its code's (nilearn's tissue maps are 8-bit maps scaled to [0, 1],
    its brain mask is 0 / 1); else ``(a as float32, None)`` when that is exact; else
    ``(a, None)``. The check is on the bits, so any other map is kept as it is."""
    top = float(a.max()) if a.size else math.nan
    if math.isfinite(top) and top > 0.0 and float(a.min()) >= 0.0:
        work = np.multiply(a, 255.0 / top)  # one float64 scratch volume, reused below
        codes = np.rint(work, out=work).astype(np.uint8)
        # flat views in memory order (nibabel's maps are Fortran-ordered: no copies)
        flat_a, flat_c, flat_w = (v.ravel(order="K") for v in (a, codes, work))
        table = np.zeros(256, dtype=np.float64)
        table[flat_c] = flat_a
        np.take(table, flat_c, out=flat_w, mode="clip")  # "raise" buffers `out`: slow
        if np.array_equal(flat_w.view(np.uint64), flat_a.view(np.uint64)):
            return codes, table
    single = a.astype(np.float32)
    if np.array_equal(single.astype(np.float64).view(np.uint64), a.view(np.uint64)):
        return single, None
    return a, None


def _expand(packed: tuple[np.ndarray, np.ndarray | None]) -> np.ndarray:
    """The float64 map of a :func:`_compact` pair, bit for bit."""
    codes, table = packed
    return codes.astype(np.float64, copy=False) if table is None else table[codes]


def atlas_unavailable_reason() -> str | None:
    """Why :func:`mni_atlas` cannot read the MNI templates here, or ``None`` when it can.

    The reason is that ``nilearn``, which ships the templates, is not installed; the message
    names the extra to install (``pip install "bayesphys[atlas]"``) and is the one
    :func:`mni_atlas` raises (as :class:`bayesphys.MissingPackage`). Found without importing
    nilearn, so that a script can refuse or skip an atlas run before any work.

    Examples
    --------
    >>> from bayesphys.problems.glioma import atlas_unavailable_reason
    >>> reason = atlas_unavailable_reason()
    >>> reason is None or "pip install" in reason
    True
    """
    if missing_module("nilearn") is None:
        return None
    return (
        "mni_atlas needs nilearn, which is not installed (it ships the MNI ICBM152 2009a "
        'templates inside the package; nothing is downloaded): pip install "bayesphys[atlas]" '
        "(or pip install nilearn)"
    )


@functools.lru_cache(maxsize=1)
def _mni_arrays() -> tuple[tuple[np.ndarray, np.ndarray | None], ...]:
    """Raw 1 mm MNI152 2009a maps ``(wm, gm, mask)`` from the nilearn package files, each as
    a :func:`_compact` pair, and the affine ``(affine [4, 4], None)``: one byte per voxel and
    map, 26 MB for the three 197 x 233 x 189 maps of nilearn 0.14 where float64 took 208 MB
    in every process that read them (``tests/odil/test_atlas.py`` measures it);
    :func:`_mni_maps` returns the float64 maps, bit for bit those of ``get_fdata()``."""
    missing = atlas_unavailable_reason()
    if missing is not None:
        raise MissingPackage(missing)
    from nilearn import datasets

    wm = datasets.load_mni152_wm_template(resolution=1)
    gm = datasets.load_mni152_gm_template(resolution=1)
    mask = datasets.load_mni152_brain_mask(resolution=1)
    return (
        _compact(np.asarray(wm.get_fdata(), dtype=np.float64)),
        _compact(np.asarray(gm.get_fdata(), dtype=np.float64)),
        _compact(np.asarray(mask.get_fdata(), dtype=np.float64)),
        (np.asarray(wm.affine, dtype=np.float64), None),
    )


def _mni_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 1 mm maps ``(wm, gm, mask, affine)`` in float64 (from the compact cache)."""
    return tuple(_expand(p) for p in _mni_arrays())


def mni_atlas(
    resolution_mm: float = 1.0,
    *,
    axial_mm: float | None = None,
    margin_mm: float = 4.0,
    dtype: torch.dtype | str = torch.float64,
    device: str | torch.device | None = "cpu",
) -> dict:
    r"""MNI ICBM152 2009a tissue maps (from ``nilearn``'s package data), cropped to the brain.

    ``resolution_mm``: isotropic voxel size; integer values average ``r^3`` blocks of the
    1 mm maps (partial volumes kept), other values resample trilinearly. ``axial_mm``: ``None``
    returns the 3-D volume ``[nx, ny, nz]`` (x left-right, y posterior-anterior, z
    inferior-superior); a number returns the axial slice ``[nx, ny]`` nearest to MNI
    :math:`z` = ``axial_mm`` (8 mm passes through the lateral ventricles). The grid is cropped
    to the bounding box of the tissue (WM + GM >= 0.1) plus ``margin_mm``.

    Returns ``{"wm", "gm", "csf", "brain", "mask", "spacing", "origin_mm"}``: probability
    maps in [0, 1] (CSF = the template's brain mask minus WM and GM), ``brain`` = (wm + gm >=
    0.1) as float (the tissue the tumour can reach), ``mask`` = the template's whole-brain mask
    (tissue and CSF, holes filled; the radiotherapy planning domain), ``spacing`` in mm,
    ``origin_mm`` = MNI coordinates of the lower corner of voxel 0.
    Raises ``ImportError`` naming the package if nilearn is missing. ``resolution_mm`` in
    [0.5, 8], ``margin_mm >= 0``, ``axial_mm`` finite, ``dtype`` a floating dtype (or its
    name), ``device`` as :func:`brain_phantom`'s (checked before the maps are read).
    """
    # True was read as 1 mm; a negative margin cropped into the brain; a NaN margin or slice
    # failed in int() without a name
    resolution_mm = check_real("resolution_mm", resolution_mm, minimum=0.5, maximum=8.0)
    margin_mm = check_real("margin_mm", margin_mm, minimum=0.0)
    if axial_mm is not None:
        axial_mm = check_real("axial_mm", axial_mm)
    # an integer dtype truncated the probability maps to 0 / 1 without a word; a device
    # string torch does not know failed with torch's own message, after the maps were read
    dtype = resolve_dtype(dtype)
    device = model_device(device)
    wm, gm, mask, aff = _mni_maps()
    csf = np.clip(mask - wm - gm, 0.0, 1.0)
    vol = torch.as_tensor(np.stack([wm, gm, csf, mask]), dtype=torch.float64)[None]
    r = float(resolution_mm)
    if abs(r - round(r)) < 1e-9:
        k = int(round(r))
        n = [s // k * k for s in vol.shape[2:]]
        vol = torch.nn.functional.avg_pool3d(vol[..., : n[0], : n[1], : n[2]], k) if k > 1 else vol
        h = float(k)
    else:
        vol = torch.nn.functional.interpolate(
            vol, scale_factor=1.0 / r, mode="trilinear", align_corners=False
        )
        h = r
    vol = vol[0]
    # lower corner of voxel 0 in MNI mm (the nifti affine gives centres of the 1 mm voxels)
    origin = aff[:3, 3] - 0.5
    if axial_mm is not None:
        iz = int(math.floor((float(axial_mm) - origin[2]) / h))
        if not 0 <= iz < vol.shape[-1]:
            raise ValueError(
                f"axial_mm: expected an MNI z in [{origin[2]:.0f}, "
                f"{origin[2] + h * vol.shape[-1]:.0f}] mm, received {axial_mm}"
            )
        vol = vol[..., iz]
        origin = origin[:2]
    tissue = (vol[0] + vol[1]) >= 0.1
    idx = tissue.nonzero()
    if len(idx) == 0:
        raise ValueError(f"axial_mm: no brain tissue in the slice at z = {axial_mm} mm")
    pad = int(math.ceil(margin_mm / h))
    lo = [max(0, int(idx[:, k].min()) - pad) for k in range(idx.shape[1])]
    hi = [min(vol.shape[k + 1], int(idx[:, k].max()) + pad + 1) for k in range(idx.shape[1])]
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    maps = [vol[(c, *sl)].to(dtype=dtype, device=device).contiguous() for c in range(4)]
    from scipy import ndimage

    whole = ((maps[3] >= 0.5) | ((maps[0] + maps[1]) >= 0.1)).cpu().numpy()
    whole = torch.as_tensor(ndimage.binary_fill_holes(whole), device=device).to(dtype)
    return {
        "wm": maps[0],
        "gm": maps[1],
        "csf": maps[2],
        "brain": ((maps[0] + maps[1]) >= 0.1).to(dtype),
        "mask": whole,
        "spacing": h,
        "origin_mm": [float(origin[k] + lo[k] * h) for k in range(len(lo))],
    }


def check_thresholds(th_up: Any, th_down: Any) -> tuple[float, float]:
    r"""The segmentation thresholds ``(th_up, th_down)`` as floats: the T1Gd threshold
    :math:`\theta_{up}` above the FLAIR threshold :math:`\theta_{down}`, both in the open unit
    interval, :math:`0 < \theta_{down} < \theta_{up} < 1`. A non-number is a ``TypeError``
    (naming ``th_up`` or ``th_down``); NaN, an infinity or another order a ``ValueError``."""
    th_up, th_down = check_real("th_up", th_up), check_real("th_down", th_down)
    if not 0.0 < th_down < th_up < 1.0:
        raise ValueError(
            f"th_down, th_up: expected 0 < th_down < th_up < 1, received th_down={th_down}, "
            f"th_up={th_up}"
        )
    return th_up, th_down


def segment(c: ArrayLike, th_up: float, th_down: float, brain: ArrayLike) -> Tensor:
    """Labels ``[*grid]`` (int64): 2 if ``c >= th_up``, 1 if ``th_down <= c < th_up``, else 0,
    inside the brain (``brain > 0``); 0 outside it whatever ``c``.

    ``c`` finite and real and ``brain`` of its shape (tensors, arrays or lists; NaN cells were
    labelled 0, a mask of another shape broadcast silently); thresholds finite with
    ``0 < th_down < th_up < 1``."""
    th_up, th_down = check_thresholds(th_up, th_down)
    # lists failed with "'list' object has no attribute 'shape'", a complex map inside
    # torch's comparison ('"ge_cpu" not implemented for ComplexFloat')
    c = as_tensor("c", c, finite=False, real=True)
    brain = as_tensor("brain", brain, device=c.device, finite=False, real=True)
    if tuple(brain.shape) != tuple(c.shape):
        raise ValueError(
            f"brain: expected the shape of c {tuple(c.shape)}, received {tuple(brain.shape)}"
        )
    check_finite("c", c)
    lab = (c >= th_down).long() + (c >= th_up).long()
    return lab * (brain > 0).long()


def synthetic_patient(
    seed: int = 0,
    *,
    n: int | None = None,
    spacing: float | None = None,
    dw: float | None = None,
    rho: float | None = None,
    focus: tuple[float, ...] | None = None,
    th_up: float = 0.6,
    th_down: float = 0.25,
    t_end: float = GLIOMA_PRIOR["t_end"],
    dg_ratio: float = GLIOMA_PRIOR["dg_ratio"],
    refine: int = 4,
    scheme: str = "strang",
    step_d: float | None = 1.0,
    future_days: float = 60.0,
    extra_foci: int = 0,
    phantom: dict | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> dict:
    r"""A synthetic patient on the phantom (module docstring); unspecified parameters are drawn.

    ``seed`` fixes the patient whatever torch's default dtype and ``dtype`` (:math:`D_w` and
    :math:`\rho` are drawn in float32, the focus, the extra foci and the PET noise in float64,
    then simulated in ``dtype``: a float32 patient is the float64 one to float32 rounding).

    ``phantom`` may be any tissue-map dict with ``wm, gm, brain, spacing`` (2-D or 3-D, e.g.
    :func:`mni_atlas`); the focus is drawn in white matter (WM > 0.9) within the central 60 %
    of each axis. Returns a dict with ``wm, gm, brain, labels, pet, c_true [*grid],
    c_future [*grid]``, ``truth = {"dw", "rho", "x0", "y0"[, "z0"], "ell", "v"}`` (focus in
    mm from the grid's lower corner; ``ell`` :math:`=\sqrt{D_w/\rho}` mm, ``v``
    :math:`= 2\sqrt{D_w\rho}` mm/day), ``foci`` (all foci ``[1 + extra_foci][d]``, mm;
    ``extra_foci`` more foci are drawn in tissue within +-5 % of each axis's extent around the
    first (GliODIL's three-focal generator draws its third focus within +-5 % of the second);
    the initial state is the maximum of the focal Gaussians (GliODIL's generator adds them);
    ``truth`` keeps the first focus) and ``th_up, th_down, t_end, dg_ratio,
    spacing``.

    ``n`` (default 64) and ``spacing`` (default 2 mm) size the built-in phantom; with
    ``phantom`` the grid is the phantom's and passing them is an error (they were silently
    ignored). Checked before any simulation: ``seed`` an int, thresholds finite with
    ``0 < th_down < th_up < 1``, ``t_end``, ``future_days >= 0``, ``dg_ratio > 0``, ``step_d``
    ``None`` or ``> 0``, ``phantom`` a dict with ``wm, gm, brain, spacing`` (tensors or numpy
    arrays).

    ``dtype``, ``device``: of the simulation and the returned maps; default float64 on the CPU,
    or with ``phantom`` those of its ``wm`` map (the faces and the brain mask follow it);
    ``device`` as :func:`brain_phantom`'s. ``phantom``'s ``gm`` and ``brain`` have the shape of
    its ``wm``.

    The two solves take ``refine * stable_steps(T, max(dw, step_d), spacing, d)`` explicit
    steps each (``T`` = ``t_end``, ``future_days``); more than :data:`MAX_PATIENT_STEPS` in all
    (e.g. ``dw=1e6``: about 1e8 steps) is a ``ValueError`` before any simulation.
    """
    seed = check_seed("seed", seed)  # 2.5 was truncated to 2, NaN / None failed in int()
    if phantom is not None:
        check_keys("phantom", phantom, ("wm", "gm", "brain", "spacing"), None, hint="tissue maps")
        given = [k for k, v in (("n", n), ("spacing", spacing)) if v is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)}: unused with phantom= (the grid is the phantom's); "
                "pass one or the other"
            )
    # the order used to be found by segment(), after both solves
    th_up, th_down = check_thresholds(th_up, th_down)
    t_end = check_real("t_end", t_end, minimum=0.0)
    future_days = check_real("future_days", future_days, minimum=0.0)
    dg_ratio = check_real("dg_ratio", dg_ratio, minimum=0.0, strict=True)
    if step_d is not None:  # NaN was ignored by max(), a negative value too
        step_d = check_real("step_d", step_d, minimum=0.0, strict=True)
    g = torch.Generator().manual_seed(int(seed))
    if phantom is not None:  # numpy maps (e.g. read from a file) failed inside .nonzero()
        # another type went past the checks: a nested list failed on a missing attribute
        # ('shape') or a tuple index after the check, or (gm) was taken silently
        for k in ("wm", "gm", "brain"):
            if not isinstance(phantom[k], (Tensor, np.ndarray)):
                raise TypeError(
                    f"phantom[{k!r}]: expected a tensor or numpy array, received "
                    f"{type(phantom[k]).__name__}"
                )
        phantom = {
            k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in phantom.items()
        }
    wm = None if phantom is None else phantom["wm"]
    if phantom is not None:
        # a brain mask of another shape was named "tissue" by the solver, after the focus
        # was drawn; a gm map of another shape "gm"
        for k in ("gm", "brain"):
            got, want = getattr(phantom[k], "shape", None), getattr(wm, "shape", None)
            if got is not None and want is not None and tuple(got) != tuple(want):
                raise ValueError(
                    f"phantom['{k}']: expected the shape of phantom['wm'] {tuple(want)}, "
                    f"received {tuple(got)}"
                )
        # a NaN brain mask was refused as "c0: ... 256 NaN/Inf entries" (the initial state it
        # masks), a NaN wm / gm as "wm" / "gm", arguments synthetic_patient does not have
        for k in ("wm", "gm", "brain"):  # tensors by now (numpy maps converted above)
            check_finite(f"phantom[{k!r}]", phantom[k])
    if dtype is None:
        dtype = wm.dtype if isinstance(wm, Tensor) else torch.float64
    dtype = resolve_dtype(dtype)  # an integer dtype gave integer maps
    if device is None:
        device = wm.device if isinstance(wm, Tensor) else "cpu"
    # "gpu" failed with torch's list of device types, "cuda" without CUDA with an
    # AssertionError (from the phantom, or from the phantom's maps moved there)
    device = model_device(device)
    if phantom is None:
        n, spacing = 64 if n is None else n, 2.0 if spacing is None else spacing
        ph = brain_phantom(n, spacing, dtype=dtype, device=device)
    else:
        # the phantom's maps in the asked dtype / device (they were used as given, so
        # dtype=float32 returned float64 maps from a float64 phantom)
        ph = {
            k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
            if isinstance(v, Tensor)
            else v
            for k, v in phantom.items()
        }
    spacing = ph["spacing"]
    shape = tuple(ph["wm"].shape)
    nd = len(shape)

    # the draws of the parameters and the focus are float32 (torch's own default, under which
    # every committed result was computed) whatever the caller's default dtype: under a
    # float64 default the same seed drew another D_w, rho and focus (another patient)
    def logu(lo, hi):
        u = float(torch.rand((), generator=g, dtype=torch.float32))
        return math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)

    # checked before any simulation: rho = 0 raised ZeroDivisionError (ell) only after both
    # solves, dw <= 0 a bare "math domain error"
    dw = logu(*GLIOMA_PRIOR["dw"]) if dw is None else check_real("dw", dw, minimum=0, strict=True)
    rho = (
        logu(*GLIOMA_PRIOR["rho"])
        if rho is None
        else check_real("rho", rho, minimum=0, strict=True)
    )
    refine = check_int("refine", refine, minimum=1)
    extra_foci = check_int("extra_foci", extra_foci, minimum=0)
    if focus is None:
        wm_ok = (ph["wm"] > 0.9).nonzero()
        size = torch.tensor(shape, device=wm_ok.device, dtype=torch.float32)
        near = wm_ok[((wm_ok - size / 2).abs() < size * 0.3).all(1)]
        if len(near) == 0:  # torch.randint failed with "random_ expects 'from' < 'to'"
            raise ValueError(
                "phantom: no white-matter voxel (wm > 0.9) within the central 60 % of each axis "
                "to draw a focus from; pass focus="
            )
        pick = near[int(torch.randint(len(near), (), generator=g))]
        # float64 whatever ``dtype`` (its draws are another stream: a float32 patient of a
        # seed had a focus up to a voxel away from the float64 one, another patient)
        jitter = torch.rand(nd, generator=g, dtype=torch.float64) - 0.5
        focus = tuple(
            float((pick[k].to(torch.float64) + 0.5 + jitter[k]) * spacing) for k in range(nd)
        )
    if isinstance(focus, Tensor):  # torch.tensor(a tensor) warned to detach and clone it
        focus = focus.detach().cpu().tolist()
    try:
        foc = torch.tensor(focus, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"focus: expected {nd} coordinates in mm (numbers), received {focus!r} ({err})"
        ) from None

    def in_tissue(f: Tensor) -> bool:
        if not bool(torch.isfinite(f).all()):
            return False
        idx = tuple(int(v) for v in torch.floor(f / spacing).long().tolist())
        return all(0 <= i < m for i, m in zip(idx, shape)) and float(ph["brain"][idx]) > 0

    # a focus outside the tissue grew no tumour (empty labels) and, with extra_foci, hung in
    # the loop below (no candidate near it is ever in tissue)
    if foc.shape != (nd,) or not in_tissue(foc):
        raise ValueError(
            f"focus: expected {nd} coordinates (mm from the grid's lower corner) of a tissue "
            f"voxel (brain > 0), received {tuple(focus)}"
        )
    foci = [foc]
    extent = torch.tensor(shape, dtype=torch.float64) * spacing  # draws in float64, as above
    tries = 0
    while len(foci) < 1 + extra_foci:
        tries += 1
        if tries > 10_000 * (1 + extra_foci):
            raise RuntimeError(
                f"extra_foci: found {len(foci) - 1} of {extra_foci} tissue voxels within "
                f"+-5 % of the grid extent around the focus {tuple(focus)}"
            )
        step = (torch.rand(nd, generator=g, dtype=torch.float64) * 2 - 1) * 0.05 * extent
        cand = (foc + step.to(device)).to(dtype)
        if in_tissue(cand):
            foci.append(cand)
    faces = tissue_faces(ph["wm"], ph["gm"], dg_ratio=dg_ratio)
    c0 = torch.stack([initial_condition(ph["wm"].shape, f, spacing) for f in foci]).amax(0)
    d_steps = dw if step_d is None else max(dw, float(step_d))
    steps = refine * stable_steps(t_end, d_steps, spacing, nd)
    fsteps = refine * stable_steps(future_days, d_steps, spacing, nd)
    if steps + fsteps > MAX_PATIENT_STEPS:
        raise ValueError(
            f"dw: {dw:g} (step_d={step_d}) needs {steps + fsteps} explicit steps (refine={refine}, "
            f"t_end={t_end:g}, future_days={future_days:g}, spacing={spacing:g}), more than "
            f"MAX_PATIENT_STEPS={MAX_PATIENT_STEPS}; use a smaller dw (the prior range is "
            f"{GLIOMA_PRIOR['dw']}) or step_d, a smaller refine or time span, or a coarser grid"
        )
    kw = {"spacing": spacing, "tissue": ph["brain"], "scheme": scheme}
    c = fk_forward(c0, faces, dw, rho, t_end=t_end, steps=steps, **kw)
    cf = fk_forward(c, faces, dw, rho, t_end=future_days, steps=fsteps, **kw)
    labels = segment(c, th_up, th_down, ph["brain"])
    noise = (0.02 * torch.randn(c.shape, generator=g, dtype=torch.float64)).to(device, dtype)
    pet = (0.75 * c + noise) * (labels > 0).to(dtype)
    return {
        "wm": ph["wm"],
        "gm": ph["gm"],
        "brain": ph["brain"],
        "labels": labels,
        "pet": pet,
        "c_true": c,
        "c_future": cf,
        "truth": {
            "dw": dw,
            "rho": rho,
            **{name: float(foc[k]) for k, name in enumerate(["x0", "y0", "z0"][:nd])},
            "ell": math.sqrt(dw / rho),
            "v": 2 * math.sqrt(dw * rho),
        },
        "foci": [f.tolist() for f in foci],
        "th_up": th_up,
        "th_down": th_down,
        "t_end": t_end,
        "dg_ratio": dg_ratio,
        "spacing": spacing,
    }


def truth_theta(patient: dict) -> Tensor:
    r"""The true parameter vector :math:`\theta = (\log D_w, \log\rho, x_0, y_0[, z_0])`
    ``[2 + d]`` (float64) of a :func:`synthetic_patient` dict, in the order of
    :attr:`bayesphys.odil.GliomaModel.theta` (focus in mm)."""
    if "truth" not in patient:
        raise ValueError("patient: expected a synthetic_patient dict with a 'truth' entry")
    tr = patient["truth"]
    focus = [tr[k] for k in ("x0", "y0", "z0") if k in tr]
    return torch.tensor([math.log(tr["dw"]), math.log(tr["rho"]), *focus], dtype=torch.float64)
