"""``bayesphys demo`` hook: ProbConserv on a small embedded Stefan problem (< ~40 s, 1 core)."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import torch

from .._files import closing_figures, save_figure
from .._gaussian_posterior import GaussianPosterior
from .._plotting import OKABE_ITO

STEP1_COLOUR, UPDATE_COLOUR = OKABE_ITO["orange"], OKABE_ITO["blue"]
STEP1_NAME = "Step 1 (GP)"  # the one name of the unconstrained model in every key
# the ProbConserv band: hatched, edge lines, no fill, so a filled Step-1 band shows through
UPDATE_BAND = {"facecolor": "none", "hatch": "///", "lw": 1, "alpha": None}


def band_pair(
    ax: Any,
    x: np.ndarray,
    before: GaussianPosterior,
    after: GaussianPosterior,
    labels: tuple[str, str],
    batch_index: int | tuple[int, ...],
) -> None:
    """The 90 % bands and means of ``before`` (Step 1) and ``after`` (ProbConserv) over ``x``
    ``[N]``, kept apart where they overlap: the wider Step-1 band a light fill, the
    ProbConserv band hatched with solid edge lines and no fill; both means drawn over the
    bands and named in the key. ``batch_index`` picks the drawn member of the batched
    posteriors (``batch_shape`` ``[*B]``, event ``[N]``); the caller draws the legend."""
    from ..plots import plot_bands

    for post, name, colour, band_style, mean_style in (
        # over the bands; the Step-1 mean a little wider, so it shows where the two means agree
        (before, labels[0], STEP1_COLOUR, {"alpha": 0.35}, {"lw": 2.2, "zorder": 3}),
        (after, labels[1], UPDATE_COLOUR, UPDATE_BAND, {"lw": 1.5, "zorder": 4}),
    ):
        plot_bands(
            post,
            x,
            levels=[0.9],
            ax=ax,
            label=f"{name} mean",
            band_label=f"{name} 90%",
            color=colour,
            batch_index=batch_index,
            band_kwargs=band_style,
            mean_kwargs=mean_style,
            legend=False,
        )


def demo(out_dir: pathlib.Path, *, device: torch.device, seed: int = 0) -> list[dict]:
    """Meta-GP Step 1 (short training) + ProbConserv update on 8 Stefan functions (u* = 0.6).

    Writes ``probconserv.nc`` (posterior: the updated field's draws ``u [chain, draw,
    function, x]`` and the front position of each, ``front [chain, draw, function]``;
    observed_data: the exact field ``u_true [function, x]``) and ``probconserv.png`` (90 %
    bands before/after the update); returns table rows.
    """

    import matplotlib.pyplot as plt

    from ..inference_data import build_inference_data, save_netcdf
    from ..problems.gpme import make_dataset, stefan_front
    from .evaluate import shock_posterior, slice_scores
    from .model import ProbConserv

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = ProbConserv("stefan", step1="gp", gp_width=16, device=device, seed=seed)
    model.fit(steps=150, progress=False)
    prob = model.problem
    test = make_dataset(prob, params=[0.6] * 8, seed=seed + 1)
    x = prob.grid(201)
    truth = prob.solution(prob.table_time, x, test.params[:, None])[:, None]
    mass = model.mass(test)
    before = model.posterior(test, method="none")
    after = model.posterior(test)
    s0 = slice_scores(before, truth, x, mass)
    s1 = slice_scores(after, truth, x, mass)
    true_front = float(stefan_front(prob.table_time, 0.6))
    f0 = shock_posterior(before, x.to(device), 200, seed=seed).squeeze(-1)
    f1 = shock_posterior(after, x.to(device), 200, seed=seed).squeeze(-1)
    draws = after.sample((200,), generator=torch.Generator(device=device).manual_seed(seed))
    idata = build_inference_data(
        posterior={"u": draws.squeeze(-2).unsqueeze(0), "front": f1.unsqueeze(0)},
        observed_data={"u_true": truth.squeeze(-2)},
        coords={"x": x.numpy()},
        dims={"u": ["function", "x"], "front": ["function"], "u_true": ["function", "x"]},
    )
    save_netcdf(idata, out_dir / "probconserv.nc", attrs={"seed": seed})
    with closing_figures():
        fig, ax = plt.subplots(figsize=(6, 3.5))
        band_pair(ax, x.numpy(), before, after, (STEP1_NAME, "ProbConserv-GP"), (0, 0))
        ax.plot(x, truth[0, 0], "k--", label="exact")
        ax.axvline(true_front, color="gray", lw=0.8, label="true front position")
        ax.set(xlabel="x", ylabel="u(0.05, x)", title="Stefan u*=0.6: conservation update")
        ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, out_dir / "probconserv.png", dpi=100)

    def row(metric, value, target):
        return {
            "component": "probconserv",
            "problem": "stefan u*=0.6, t=0.05",
            "metric": metric,
            "value": float(value),
            "target": target,
        }

    return [
        row("|CE| Step 1", s0["ce"].abs().mean(), None),
        row("|CE| ProbConserv", s1["ce"].abs().mean(), "0 (round-off)"),
        row("MSE Step 1", s0["mse"].mean(), None),
        row("MSE ProbConserv", s1["mse"].mean(), "< Step 1"),
        row("coverage90 ProbConserv", s1["coverage90"].mean(), "[0.85, 0.95]"),
        row("front bias Step 1", (f0.mean(0) - true_front).mean(), None),
        row("front bias ProbConserv", (f1.mean(0) - true_front).mean(), "|bias| < 0.006"),
    ]
