"""Tutorial: fit a model, read its uncertainty in ArviZ, check its calibration.

Runs the shared core's conjugate field model end to end:

1. simulate a field and noisy sensor data;
2. ``fit`` the kernel hyperparameters (type-II maximum likelihood) -> ``FitResult``;
3. ``posterior()`` -> ``GaussianPosterior``; draws, bands (:func:`bayesphys.plot_bands`),
   coverage of the truth;
4. export to ArviZ with ``posterior``, ``posterior_predictive``, ``log_likelihood`` and
   ``observed_data`` groups; ``az.summary``, ``az.plot_posterior``, ``az.plot_ppc``, ``az.loo``;
5. a calibration curve (observed vs nominal coverage) over many simulated datasets.

``python -m bayesphys.examples.tutorial_arviz`` (writes to ``bayesphys-out/tutorial_arviz``;
``--out DIR`` for another folder, ``--smoke`` for a seconds-long run).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

from .._files import closing_figures, save_figure
from . import _args

DESCRIPTION = "tutorial: fit, posterior, ArviZ summary/plots and a calibration curve"


def main(argv: list[str] | None = None) -> dict:
    from .._arviz_version import import_arviz

    az = import_arviz()
    import matplotlib.pyplot as plt

    from bayesphys import build_inference_data, plot_bands, resolve_device, save_netcdf
    from bayesphys.inference_data import ARVIZ_V1
    from bayesphys.metrics import calibration_curve, interval_coverage, relative_l2
    from bayesphys.problems.linear_gaussian import ConjugateGaussianField, linear_gaussian_problem

    ap = argparse.ArgumentParser(prog="bayesphys run tutorial-arviz", description=DESCRIPTION)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--device", type=_args.device, default="cpu")
    _args.add_out(ap, "tutorial_arviz")
    ap.add_argument(
        "--seed",
        type=_args.seed,
        default=0,
        help="the dataset and the draws; the calibration section's simulated datasets "
        "(seeds 1000, 1001, ...) stay fixed",
    )
    args = ap.parse_args(argv)
    dev, out = resolve_device(args.device), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    noise = 0.1

    # 1-2. data and fit
    prob = linear_gaussian_problem(noise=noise, seed=args.seed, device=dev)
    model = ConjugateGaussianField(prob["x"], prob["idx"], prob["y"], noise=noise, device=dev)
    fit = model.fit(steps=50 if args.smoke else 300, progress=not args.smoke)
    # 3. posterior
    post = model.posterior()
    lo, hi = post.interval(0.9)
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    draws = post.sample((2, 500), generator=gen)  # [chain, draw, n]
    with closing_figures():  # the field's 50% and 90% bands, the truth and the sensors
        ax = plot_bands(post, prob["x"], truth=prob["u"], obs=(prob["x"][prob["idx"]], prob["y"]))
        ax.set_title(f"posterior of u from {len(prob['idx'])} noisy sensors", fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylabel("u(x)")
        save_figure(ax.figure, out / "tutorial_bands.png", dpi=100, bbox_inches="tight")
    # 4. ArviZ
    at = draws[..., prob["idx"]]
    y_rep = at + noise * torch.randn(at.shape, generator=gen, device=dev, dtype=at.dtype)
    idata = build_inference_data(
        posterior={"u": draws, "u_max": draws.amax(-1)},
        posterior_predictive={"y": y_rep},
        log_likelihood={"y": torch.distributions.Normal(at, noise).log_prob(prob["y"])},
        observed_data={"y": prob["y"]},
        coords={"x": prob["x"], "sensor": prob["x"][prob["idx"]]},
        dims={"u": ["x"], "y": ["sensor"]},
    )
    save_netcdf(idata, out / "tutorial.nc", attrs={"seed": args.seed})
    print(az.summary(idata, var_names=["u_max"]).to_string())
    # PSIS-LOO: with a handful of sensors each observation pins the field near it, so
    # leaving one out moves the posterior far and the Pareto k of some points exceeds ArviZ's
    # threshold good_k (it warns that the estimate is then unreliable): the count is printed
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        loo = az.loo(idata, pointwise=True)
    good_k = float(getattr(loo, "good_k", 0.7))
    high_k = int((loo.pareto_k > good_k).sum())
    elpd = loo.elpd if ARVIZ_V1 else loo.elpd_loo  # renamed in ArviZ 1
    print(
        f"elpd_loo {float(elpd):.2f}; {high_k} of {loo.pareto_k.size} observations have "
        f"Pareto k > {good_k:.2f}, where the leave-one-out estimate is unreliable (each sensor "
        "pins the field near it)"
    )
    with closing_figures():  # only the tutorial's figures are closed, a failed save included
        # ArviZ 1 (Python >= 3.12) renamed the plots: plot_posterior -> plot_dist,
        # plot_ppc -> plot_ppc_dist
        # the true value of u_max (the simulated field's maximum) against its posterior
        u_max_true = round(float(prob["u"].max()), 3)  # rounded: ArviZ prints it in full
        if ARVIZ_V1:
            az.plot_dist(idata, var_names=["u_max"], backend="matplotlib")
            ax = plt.gcf().axes[0]
            ax.axvline(u_max_true, color="k", ls="--", lw=1, label=f"truth {u_max_true:g}")
            ax.legend(fontsize=8)
            ax.set_title(f"u_max (dashed line: the true value {u_max_true:g})")
        else:
            az.plot_posterior(idata, var_names=["u_max"], ref_val=u_max_true)
            plt.gca().set_title(f"u_max (reference line: the true value {u_max_true:g})")
            # ArviZ writes its labels "semibold", a weight matplotlib's DejaVu Sans lacks:
            # the save logged "findfont: Failed to find font weight semibold ..., now using
            # 700" into the tutorial's output; bold is the weight it fell back to
            for text in plt.gca().texts:
                if text.get_fontweight() == "semibold":
                    text.set_fontweight("bold")
        # ArviZ lays out its own figures: "tight" keeps the titles and labels set here inside
        save_figure(plt.gcf(), out / "tutorial_posterior.png", dpi=100, bbox_inches="tight")
        # its subset of predictive draws from the example's seed; ArviZ seeds numpy's global
        # stream with it, so the caller's state is put back after
        np_state = np.random.get_state()
        try:
            if ARVIZ_V1:
                az.plot_ppc_dist(idata, num_samples=50, backend="matplotlib")
                shown = "ECDFs: 50 predictive replicates (blue), observed (black)"
            else:
                # numpy's seeds are [0, 2**32): --seed takes |seed| < 2**43 (a negative or
                # larger seed raised numpy's ValueError after the fit), so wrapped as
                # seed_everything wraps it
                # no "predictive mean" curve: ArviZ averages the replicates' KDEs with zeros
                # outside each one's own range, which drew stepped tails and low peaks that
                # no replicate has
                az.plot_ppc(idata, num_pp_samples=50, random_seed=args.seed % 2**32, mean=False)
                shown = "densities: 50 predictive replicates vs observed"
        finally:
            np.random.set_state(np_state)
        ax = plt.gcf().axes[0]
        ax.set_title(f"posterior predictive check of the sensor data y\n({shown})", fontsize=10)
        ax.set_xlabel("y (sensor reading)")
        save_figure(plt.gcf(), out / "tutorial_ppc.png", dpi=100, bbox_inches="tight")
    # 5. calibration over simulated datasets
    n_sims = 5 if args.smoke else 40
    nominal = observed = None
    obs_all = []
    for s in range(n_sims):
        p = linear_gaussian_problem(noise=noise, seed=1000 + s, device=dev)
        m = ConjugateGaussianField(
            p["x"],
            p["idx"],
            p["y"],
            noise=noise,
            lengthscale=model.lengthscale,
            outputscale=model.outputscale,
            device=dev,
        )
        nominal, observed = calibration_curve(m.posterior(), p["u"])
        obs_all.append(observed)
    observed = torch.stack(obs_all).mean(0)
    with closing_figures():
        fig, ax = plt.subplots(figsize=(3.8, 3.8))
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        for j, o in enumerate(obs_all):  # each simulated dataset's curve, faint
            ax.plot(
                nominal, o, color="0.5", lw=0.6, alpha=0.35, label="one dataset" if j == 0 else None
            )
        ax.plot(nominal, observed, "o-", color="C0", label="mean")
        ax.set_xlabel("nominal coverage")
        ax.set_ylabel("observed coverage")
        ax.set_title(f"calibration over {n_sims} simulated datasets", fontsize=9)
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        save_figure(fig, out / "tutorial_calibration.png", dpi=100)
    return {
        "seed": args.seed,
        "fit_steps": fit.steps,
        "lengthscale": model.lengthscale,
        "rel_l2": float(relative_l2(post.mean, prob["u"])),
        "coverage90": float(interval_coverage(lo, hi, prob["u"])),
        "elpd_loo": float(elpd),
        "loo_high_pareto_k": high_k,
        "calibration_max_gap": float((observed - nominal).abs().max()),
        "u_max_true": u_max_true,
        "out": str(out),
    }


if __name__ == "__main__":  # pragma: no cover  (`bayesphys run` prints the result itself)
    from .._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        res = main()
        print({k: v for k, v in res.items() if k != "out"})
        print(f"wrote the tutorial's files to {res['out']}")
