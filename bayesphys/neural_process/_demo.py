"""``bayesphys demo`` hook: a small RGNP on the 1-D nonlinear Poisson problem (P1).

Trains a narrow RGNP for 500 steps (about 20 s on one core; physics only, no solver data), then
reports the forward field error (NSE_u), 2-sigma coverage and the GICNet parameter error on 100
seeded reference cases; writes ``neural_process.nc`` and ``neural_process.png``.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["demo"]


def demo(out_dir: Path, *, device: torch.device, seed: int = 0) -> list[dict]:

    import matplotlib.pyplot as plt

    from .._files import closing_figures, save_figure
    from ..inference_data import save_netcdf
    from ..plots import plot_bands
    from ..problems.rgnp import poisson_test_set
    from .evaluate import evaluate_poisson
    from .model import RandomGridNP

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = RandomGridNP("poisson", "RGNP", size="small", device=device, seed=seed)
    fit = model.fit(steps=500, progress=False)  # a step count, not a time budget: reproducible
    test = poisson_test_set(100, seed=0)
    m = evaluate_poisson(model, test)

    x = torch.as_tensor(test["x"], dtype=model.dtype)
    post = model.posterior(x, z=test["z"][:3], w=test["w"][:3])
    zpost = model.parameter_posterior(test["x"][1:-1], test["u"][0, 1:-1], test["w"][0])
    zdraws = zpost.sample(
        (1, 500), generator=torch.Generator(device=model.device).manual_seed(seed)
    )
    idata = post.to_inference_data(
        dims=["case", "x"],
        coords={"case": [0, 1, 2], "x": test["x"]},
        num_samples=500,
        seed=seed,
        params={"z": zdraws[:, :, 0]},
        observed={"u_reference": torch.as_tensor(test["u"][:3])},
    )
    save_netcdf(idata, out_dir / "neural_process.nc", attrs={"seed": seed})

    with closing_figures():
        fig, ax = plt.subplots(1, 3, figsize=(12, 3.2))
        for i in range(3):
            # the central 95% band of the Gaussian p(u | z_i, w_i): mean ± 1.96 sd
            plot_bands(
                post,
                test["x"],
                levels=(0.95,),
                ax=ax[i],
                label="RGNP mean",
                band_label="95% band",
                batch_index=i,
                legend=False,
            )
            ax[i].plot(test["x"], test["u"][i], "k--", lw=1, label="reference")
            ax[i].set(xlabel="x", ylabel="u(x)")
            ax[i].set_title(f"case {i}: forward posterior of u given the true z", fontsize=9)
        ax[0].legend(fontsize=7)
        # no time in the title: the same seed gives the same file
        fig.suptitle(
            f"RGNP, {fit.steps} physics-only steps: band = forward posterior p(u | true z, w)",
            fontsize=10,
        )
        fig.tight_layout()
        save_figure(fig, out_dir / "neural_process.png", dpi=100)

    comp, prob = "neural_process", "P1 nonlinear Poisson (100 cases)"
    return [
        {
            "component": comp,
            "problem": prob,
            "metric": "nse_u",
            "value": m["nse_u"],
            "target": "ref. TF code 0.20 and R0 0.36 after 10 steps",
        },
        {
            "component": comp,
            "problem": prob,
            "metric": "coverage2sd_u",
            "value": m["coverage2sd_u"],
            "target": "[0.90, 0.99]",
        },
        {
            "component": comp,
            "problem": prob,
            "metric": "nse_z",
            "value": m["nse_z"],
            "target": "< 1 (the prior mean scores ~1)",
        },
        {
            "component": comp,
            "problem": prob,
            "metric": "steps",
            "value": float(fit.steps),
            "target": None,
        },
    ]
