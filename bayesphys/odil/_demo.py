"""ODIL demo: infer D_w, rho and the focus of a synthetic glioma on the 2-D brain phantom.

``glioma_case`` is shared by ``bayesphys demo`` (small grid) and ``bayesphys run glioma``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from .._files import closing_figures, save_figure
from .._plotting import OKABE_ITO
from ..inference_data import save_netcdf
from ..problems.glioma import brain_phantom, synthetic_patient
from .foci import focus_error_mm, select_n_foci
from .glioma import GliomaModel
from .radiotherapy import model_plan, recurrence_coverage, standard_margin_plan

__all__ = ["demo", "glioma_case"]

# the radiotherapy panels' four classes, plan + 2 * recurrence (Okabe-Ito colours)
RT_CLASSES = ("outside", "plan only", "recurrence missed", "recurrence covered")
RT_COLOURS = ("#1b1b1b", OKABE_ITO["sky blue"], OKABE_ITO["vermillion"], OKABE_ITO["yellow"])
# the segmentation's three labels (0 none, 1 edema, 2 visible core)
SEG_CLASSES = ("none", "edema", "core")
SEG_COLOURS = ("#1b1b1b", OKABE_ITO["orange"], OKABE_ITO["reddish purple"])
CORE_OUTLINE = OKABE_ITO["black"]


def _categorical(fig, ax, img, colours, names, ext: list[float], key: bool = True) -> None:
    """Integer classes ``0..len(colours)-1`` in discrete colours, a key naming each class
    (unless ``key`` is false: a panel that shares its neighbour's key)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap(colours)
    norm = BoundaryNorm([k - 0.5 for k in range(len(colours) + 1)], cmap.N)
    img = torch.as_tensor(img).double().T.cpu().numpy()  # a tensor warned in numpy
    im = ax.imshow(img, origin="upper", extent=ext, cmap=cmap, norm=norm, interpolation="nearest")
    if not key:
        return
    bar = fig.colorbar(im, ax=ax, fraction=0.046, ticks=range(len(colours)))
    bar.ax.set_yticklabels(names, fontsize=7)


def _rt_panel(
    fig,
    ax,
    plan: torch.Tensor,
    rec: torch.Tensor,
    ext: list[float],
    core: torch.Tensor,
    key: bool = True,
) -> None:
    """``plan + 2 * rec`` in four discrete colours with a key naming each class (``key``); the
    visible core (where recurrence is not counted, so it shows as "plan only") outlined."""
    from matplotlib.lines import Line2D

    _categorical(fig, ax, plan.double() + 2 * rec.double(), RT_COLOURS, RT_CLASSES, ext, key)
    ax.contour(
        core.double().T.cpu().numpy(),
        levels=[0.5],
        colors=CORE_OUTLINE,
        linewidths=1.5,
        origin="upper",
        extent=ext,
    )
    ax.legend(
        handles=[Line2D([], [], color=CORE_OUTLINE, lw=1.5, label="visible core")],
        loc="upper left",
        fontsize=7,
        framealpha=0.8,
    )


def glioma_case(
    out_dir: Path,
    *,
    device: torch.device,
    seed: int = 0,
    small: bool = True,
    pet: bool = False,
    num_samples: int = 100,
    progress: bool = False,
    name: str = "odil",
    atlas: bool = False,
    foci: int = 1,
) -> dict:
    """Simulate, fit, export and plot one synthetic patient; returns figures and paths.

    ``atlas``: use the MNI152 axial slice (:func:`~bayesphys.problems.glioma.mni_atlas`, needs
    nilearn; 4 mm if ``small`` else 2 mm) instead of the analytic phantom. ``foci``: number of
    foci of the simulated tumour; with more than one the model's number of foci (1-3) is chosen
    by Laplace evidence (:func:`~bayesphys.odil.select_n_foci`)."""

    import matplotlib.pyplot as plt

    n, h = (32, 4.0) if small else (64, 2.0)
    if atlas:
        from ..problems.glioma import mni_atlas

        ph = mni_atlas(h, axial_mm=8.0)
        plan_mask = ph["mask"].cpu()
    else:
        ph = brain_phantom(n, h)
        plan_mask = ph["brain"].cpu()
    p = synthetic_patient(seed, phantom=ph, extra_foci=foci - 1)
    t0 = time.perf_counter()

    def make(k: int) -> GliomaModel:
        return GliomaModel.from_patient(p, use_pet=pet, device=device, seed=seed, n_foci=k)

    if foci > 1:
        model, evidence = select_n_foci(make, (1, 2, 3), progress=progress)
        res = model.result
    else:
        model, evidence = make(1), {}
        res = model.fit(progress=progress)
    post = model.posterior(num_samples=num_samples, seed=seed)
    q05, q50, q95 = (post.quantile([0.05, 0.5, 0.95])).cpu()
    seconds = time.perf_counter() - t0
    idata = model.to_inference_data(num_samples=max(num_samples // 2, 10), seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    nc = save_netcdf(idata, out_dir / f"{name}.nc", attrs={"seed": seed})
    est, tr = model.estimates(), p["truth"]
    # radiotherapy: recurrence = future tumour >= th_down outside the visible core
    brain = p["brain"].cpu()
    wm = p["wm"].cpu()
    labels = p["labels"].cpu()
    rec = (p["c_future"].cpu() >= p["th_down"]) & (labels < 2)
    std = standard_margin_plan(labels, plan_mask, h, 15.0)
    future = model.posterior(
        num_samples=max(num_samples // 2, 10), seed=seed, t_end=p["t_end"] + 60.0
    )
    score = future.quantile([0.95])[0].cpu()
    mine = model_plan(score, plan_mask, int(std.sum()))
    cov_std, cov_model = recurrence_coverage(std, rec), recurrence_coverage(mine, rec)
    with closing_figures():
        # constrained layout: tight_layout left wide empty bands between the rows of
        # equal-aspect maps
        fig, ax = plt.subplots(2, 4, figsize=(13, 6.0), layout="constrained")
        sx, sy = (k * h for k in labels.shape)
        ext = [0, sx, sy, 0]
        # the c(T) maps to compare (truth, median, quantiles) on one colour scale
        c_scale = {"vmin": 0.0, "vmax": 1.0}
        c_name = "tumour-cell density c"
        panels = [
            (labels, "segmentation", None, None),
            (p["c_true"].cpu(), "true c(T)", c_scale, c_name),
            (q50, "posterior median c(T)", c_scale, c_name),
            (q95 - q05, "90% band width", {}, "q95 - q05 of c(T)"),
            (q05, "5% quantile c(T)", c_scale, c_name),
            (q95, "95% quantile c(T)", c_scale, c_name),
            (std, f"15 mm margin ({cov_std:.0%} of recurrence)", None, None),
            (mine, f"posterior plan ({cov_model:.0%})", None, None),
        ]
        for i, (a, (img, title, scale, bar_label)) in enumerate(zip(ax.flat, panels)):
            if i == 0:
                _categorical(fig, a, img, SEG_COLOURS, SEG_CLASSES, ext)
            elif i >= 6:  # the radiotherapy plans against the recurrence
                # one key for both plans, on the last: a key beside each widened the third
                # column, so the fourth sat further right than the others
                _rt_panel(fig, a, img, rec, ext, labels == 2, key=i == 7)
            else:
                bar = fig.colorbar(
                    a.imshow(
                        torch.as_tensor(img).T.detach().cpu().numpy(),
                        origin="upper",
                        extent=ext,
                        cmap="magma",
                        **scale,
                    ),
                    ax=a,
                    fraction=0.046,
                )
                bar.set_label(bar_label, fontsize=7)
                bar.ax.tick_params(labelsize=7)  # as the class names of the other keys
            a.contour(
                brain.T.numpy(),
                levels=[0.5],
                colors="w",
                linewidths=0.5,
                origin="upper",
                extent=ext,
            )
            a.contour(
                wm.T.numpy(), levels=[0.5], colors="0.6", linewidths=0.3, origin="upper", extent=ext
            )
            a.set_title(title, fontsize=8)
            a.set_xticks([])
            a.set_yticks([])
        fig.suptitle(
            f"D_w {est['dw']:.3f} (true {tr['dw']:.3f}) mm²/d, rho {est['rho']:.3f} "
            f"({tr['rho']:.3f}) /d, "
            f"ell {est['ell']:.2f} ({tr['ell']:.2f}) mm, v {est['v']:.3f} ({tr['v']:.3f}) mm/d\n"
            # the maps carry no axes ticks: their scale stated once
            f"maps: {labels.shape[0]} x {labels.shape[1]} voxels of {h:g} mm "
            f"({sx:g} x {sy:g} mm); outlines: brain (white), white matter (grey)",
            fontsize=9,
        )
        png = out_dir / f"{name}.png"
        save_figure(fig, png, dpi=110)
    lv = math.log(est["v"] / tr["v"]) / max(est["sd_log_v"], 1e-12)
    return {
        "idata": idata,
        "model": model,
        "result": res,
        "netcdf": str(nc),
        "png": str(png),
        "estimates": est,
        "truth": tr,  # its focus is the first of "foci"
        "foci": p["foci"],  # every true focus [K][d], mm
        "seconds": seconds,
        "rel_err_l": abs(est["ell"] / tr["ell"] - 1),
        "rel_err_v": abs(est["v"] / tr["v"] - 1),
        "focus_err_mm": focus_error_mm(est["foci"], p["foci"]),
        "n_foci": model.n_foci,
        "log_evidence": evidence,
        "z_log_v": lv,
        "rt_coverage_model": cov_model,
        "rt_coverage_standard": cov_std,
    }


def demo(out_dir: Path, *, device: torch.device, seed: int = 0) -> list[dict]:
    """Small embedded glioma inverse problem (32x32 phantom at 4 mm); writes odil.nc/odil.png."""
    r = glioma_case(Path(out_dir), device=device, seed=seed, small=True, num_samples=40)
    rows = [
        ("rel_err_l", r["rel_err_l"], "< 0.10 (anchor B1)"),
        ("rel_err_v", r["rel_err_v"], "< 0.10 (anchor B1)"),
        ("focus_err_mm", r["focus_err_mm"], "< 1 voxel (4 mm)"),
        ("z_log_v", r["z_log_v"], "|z| < 2"),
        (
            "rt_coverage_model",
            r["rt_coverage_model"],
            f">= 15 mm margin ({r['rt_coverage_standard']:.2f})",
        ),
        ("seconds", r["seconds"], "< 30"),
    ]
    return [
        {
            "component": "odil",
            "problem": "glioma-phantom-32",
            "metric": m,
            "value": float(v),
            "target": t,
        }
        for m, v, t in rows
    ]
