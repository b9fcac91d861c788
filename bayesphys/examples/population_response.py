"""Predict the response of unseen populations with Meta Flow Matching, with uncertainty.

Trains a 3-member MFM ensemble on the interacting-particle benchmark (B3), predicts the
evolved state of populations it never saw, plots predicted vs true populations (member
predictions as the uncertainty), calibrates a split-conformal W2 radius and prints an ArviZ
summary of the W2-to-truth posterior.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .._files import atomic_write_text, closing_figures, save_figure
from . import _args

DESCRIPTION = "MFM: response of unseen interacting-particle populations with ensemble uncertainty"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="bayesphys run population-response", description=DESCRIPTION)
    ap.add_argument("--smoke", action="store_true", help="tiny run (< 30 s)")
    ap.add_argument("--device", type=_args.device, default="cpu")
    _args.add_out(ap, "population_response")
    ap.add_argument("--seed", type=_args.seed, default=0)
    ap.add_argument("--steps", type=_args.positive_int, default=None)
    args = ap.parse_args(argv)

    from .._arviz_version import import_arviz

    az = import_arviz()
    import matplotlib.pyplot as plt

    from bayesphys import plot_populations
    from bayesphys._device import resolve_device
    from bayesphys.inference_data import group_dataset, save_netcdf
    from bayesphys.meta_fm import MFMEnsemble, w2_inference_data
    from bayesphys.meta_fm.evaluation import population_metrics
    from bayesphys.problems.populations import interacting_particles

    device = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        # 10 calibration populations: with fewer than 9 the 90 % conformal radius is infinite
        sizes, steps, members, width, pts = (24, 10, 4, 64), args.steps or 60, 2, 64, 64
    else:
        sizes, steps, members, width, pts = (200, 30, 6, 256), args.steps or 2000, 3, 128, 256
    data = interacting_particles(
        n_train=sizes[0], n_cal=sizes[1], n_test=sizes[2], n_points=sizes[3], seed=args.seed
    )
    kw = dict(
        width=width,
        layers=4,
        time_dim=32,
        fourier=32,
        fourier_sigma=1.0,
        gnn_hidden=32,
        knn_k=min(50, pts - 1),
        points=pts,
        lr=1e-3,
        gnn_lr=1e-3,
    )
    ens = MFMEnsemble(data, members=members, seed=args.seed, device=device, **kw)
    fit = ens.fit(steps=steps, progress=not args.smoke)
    test, cal = data.subset("test"), data.subset("cal")
    unc = ens.uncertainty(cal, test, max_points=None)
    post = ens.posterior(test.source, num_samples=1, seed=args.seed)
    idata = w2_inference_data(post, test.target, max_points=None)
    save_netcdf(idata, out / "population_response.nc", attrs={"seed": args.seed})
    summary = az.summary(group_dataset(idata, "posterior")[["w2"]], kind="stats")
    print(summary.to_string())

    ident = [population_metrics(s, t)["w2"] for s, t in zip(test.source, test.target)]
    with closing_figures():
        fig, axes = plt.subplots(1, len(test), figsize=(3.3 * len(test), 3.6))
        # W2 between the pooled ensemble prediction and the true T=1 population, beside the
        # identity baseline (the source itself as the prediction)
        titles = [
            f"W2 to true T=1: prediction {e:.2f},\nidentity {b:.2f}; ensemble spread {s:.2f}"
            for e, b, s in zip(unc["test_error"], ident, unc["test_spread"])
        ]
        for i, ax in enumerate(axes):  # post's chains are the members: one colour each
            plot_populations(
                post,
                truth=test.target[i],
                source=test.source[i],
                batch_index=i,
                ax=ax,
                title=titles[i],
                draw_label="member {chain}",
                truth_label="true T=1",
                source_label="source (T=0)",
                legend=False,
            )
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7, markerscale=4)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        save_figure(fig, out / "population_response.png", dpi=90)
    result = {
        "seed": args.seed,
        "w2_test_mean": float(np.mean(unc["test_error"])),
        "w2_identity_mean": float(np.mean(ident)),
        "spearman_spread_error": unc["spearman"],
        "conformal_radius_score": unc["radius"],
        "coverage90": unc["coverage"],
        "fit_seconds": fit.seconds,
        "w2_summary": summary.to_dict(),
        "netcdf": str(out / "population_response.nc"),
        "plot": str(out / "population_response.png"),
    }
    atomic_write_text(out / "population_response.json", json.dumps(result, indent=1, default=float))
    return result


if __name__ == "__main__":  # `bayesphys run` prints the result itself
    from .._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        torch.set_num_threads(min(2, torch.get_num_threads()))
        res = main()
        print(
            json.dumps({k: v for k, v in res.items() if k != "w2_summary"}, indent=1, default=float)
        )
