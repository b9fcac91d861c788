r"""Glioma test problems: a 2-D analytic brain phantom and synthetic patients.

* :func:`brain_phantom` -- white matter (WM), grey matter (GM) and CSF probability maps
  ``[n, n]`` of an axial-slice-like phantom: an elliptic brain with a cortical GM ribbon, two
  deep-GM nuclei, two lateral ventricles (CSF) and a midline CSF fissure, smoothed over one
  voxel; background outside the skull is neither tissue nor CSF. No atlas, nothing downloaded.
* :func:`synthetic_patient` -- draws Fisher-Kolmogorov parameters (log-uniform
  :math:`D_w, \rho`), a focus inside white matter, grows the tumour with our explicit solver
  (:func:`bayesphys.odil.fk.fk_forward`), and observes the GliODIL/BraTS-style segmentation
  ``labels`` (2 = T1Gd core, :math:`c\ge\theta_{up}`; 1 = FLAIR edema,
  :math:`\theta_{down}\le c<\theta_{up}`; 0 = otherwise), a PET proxy
  :math:`0.75\,c + \mathcal N(0, 0.02^2)` inside the lesion, and the "future" state
  :math:`c(T + 60\,\mathrm d)` for radiotherapy evaluation.

Truth is simulated with ``refine`` times smaller time steps than a fit uses, so fits carry a
(small) discretisation model error, as with real data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..odil.fk import fk_forward, initial_condition, stable_steps, tissue_faces

__all__ = ["brain_phantom", "synthetic_patient", "segment", "GLIOMA_PRIOR"]

#: prior ranges of the synthetic study (mm^2/day, 1/day)
GLIOMA_PRIOR = {"dw": (0.1, 0.5), "rho": (0.025, 0.1), "t_end": 100.0, "dg_ratio": 10.0}


def _smooth(a: Tensor) -> Tensor:
    k = torch.tensor([0.25, 0.5, 0.25], dtype=a.dtype, device=a.device)
    for ax in range(a.ndim):
        a = k[0] * torch.roll(a, 1, ax) + k[1] * a + k[2] * torch.roll(a, -1, ax)
    return a


def brain_phantom(
    n: int = 64,
    spacing: float = 2.0,
    *,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> dict[str, Tensor | float]:
    """Analytic 2-D brain phantom on an ``n x n`` grid of ``spacing`` mm.

    Returns ``{"wm", "gm", "csf", "brain", "spacing"}``; maps are ``[n, n]`` in [0, 1],
    ``brain`` = (wm + gm >= 0.1) as float. Geometry scales with the field of view
    ``n * spacing`` (default 128 mm).
    """
    if n < 16:
        raise ValueError(f"n: expected >= 16, received {n}")
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


def segment(c: Tensor, th_up: float, th_down: float, brain: Tensor) -> Tensor:
    """Labels ``[*grid]`` (int64): 2 if ``c >= th_up``, 1 if ``th_down <= c < th_up``, else 0."""
    lab = (c >= th_down).long() + (c >= th_up).long()
    return lab * (brain > 0).long()


def synthetic_patient(
    seed: int = 0,
    *,
    n: int = 64,
    spacing: float = 2.0,
    dw: float | None = None,
    rho: float | None = None,
    focus: tuple[float, ...] | None = None,
    th_up: float = 0.6,
    th_down: float = 0.25,
    t_end: float = GLIOMA_PRIOR["t_end"],
    dg_ratio: float = GLIOMA_PRIOR["dg_ratio"],
    refine: int = 4,
    future_days: float = 60.0,
    phantom: dict | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> dict:
    """A synthetic patient on the phantom (module docstring); unspecified parameters are drawn.

    Returns a dict with ``wm, gm, brain, labels, pet, c_true [n, n], c_future [n, n]``,
    ``truth = {"dw", "rho", "x0", "y0", "ell", "v"}``, ``th_up, th_down, t_end, dg_ratio,
    spacing``.
    """
    g = torch.Generator().manual_seed(int(seed))
    ph = phantom or brain_phantom(n, spacing, dtype=dtype, device=device)
    spacing = ph["spacing"]
    n = ph["wm"].shape[0]

    def logu(lo, hi):
        return math.exp(
            math.log(lo) + (math.log(hi) - math.log(lo)) * float(torch.rand((), generator=g))
        )

    dw = logu(*GLIOMA_PRIOR["dw"]) if dw is None else float(dw)
    rho = logu(*GLIOMA_PRIOR["rho"]) if rho is None else float(rho)
    if focus is None:
        wm_ok = (ph["wm"] > 0.9).nonzero()
        centre = torch.tensor([n / 2, n / 2], device=wm_ok.device)
        near = wm_ok[((wm_ok - centre).abs() < n * 0.3).all(1)]
        pick = near[int(torch.randint(len(near), (), generator=g))]
        jitter = torch.rand(2, generator=g, dtype=dtype) - 0.5
        focus = tuple(float((pick[k] + 0.5 + jitter[k]) * spacing) for k in range(2))
    foc = torch.tensor(focus, dtype=dtype, device=device)
    faces = tissue_faces(ph["wm"], ph["gm"], dg_ratio=dg_ratio)
    c0 = initial_condition(ph["wm"].shape, foc, spacing)
    steps = refine * stable_steps(t_end, dw, spacing, 2)
    c = fk_forward(
        c0, faces, dw, rho, t_end=t_end, steps=steps, spacing=spacing, tissue=ph["brain"]
    )
    fsteps = refine * stable_steps(future_days, dw, spacing, 2)
    cf = fk_forward(
        c, faces, dw, rho, t_end=future_days, steps=fsteps, spacing=spacing, tissue=ph["brain"]
    )
    labels = segment(c, th_up, th_down, ph["brain"])
    noise = 0.02 * torch.randn(c.shape, generator=g, dtype=dtype).to(device)
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
            "x0": float(foc[0]),
            "y0": float(foc[1]),
            "ell": math.sqrt(dw / rho),
            "v": 2 * math.sqrt(dw * rho),
        },
        "th_up": th_up,
        "th_down": th_down,
        "t_end": t_end,
        "dg_ratio": dg_ratio,
        "spacing": spacing,
    }
