r"""Inverse problem: the coefficient field of a nonlinear Poisson equation from noisy sensors.

:math:`-(\kappa(u, x) u_x)_x = w` on :math:`[-1, 1]`, :math:`u(\pm1) = 0`,
:math:`\kappa = \operatorname{softplus}(u \sum_{i<5} z_i T_i(x)) + 0.1`. A random-grid neural
process (RGNP, Vadeboncoeur et al., ICML 2023) is trained once on physics plus 1000 labelled
noisy sensor sets; then, for a *new* case observed at 40 random off-grid sensors
(:math:`\sigma_y = 0.05`):

1. the GICNet gives an amortised Gaussian :math:`p_\beta(z \mid y, X_{obs}, w)` in one pass;
2. it is corrected by self-normalised importance sampling towards
   :math:`p(z)\,p(y \mid z, w)`, where :math:`p(y \mid z, w)` is the trained forward GP's
   closed-form marginal likelihood (the proposal is the GICNet Gaussian with doubled scale);
3. draws of :math:`z` push through the forward GP to bands for :math:`u` and for
   :math:`\kappa(u, x)`; ``az.summary`` reports the parameter posterior.

An effective sample size of the importance weights below :data:`ESS_WARN` is warned about
(``RuntimeWarning``): the posterior of :math:`z` is then a near point mass on a few proposals.

``python examples/poisson_coefficient.py [--smoke] [--steps N] [--proposals N] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .._checks import offset_seed
from .._files import atomic_write_text, closing_figures, save_figure
from .._plotting import NOISE_FREE_BAND, plot_observations
from .._process_state import torch_threads
from .._stack import user_stacklevel
from .._warning_types import BayesphysRuntimeWarning
from ..plots import plot_bands
from ..posterior import SamplePosterior
from . import _args

DESCRIPTION = "Nonlinear Poisson coefficient field from noisy off-grid sensors (RGNP + GICNet)"
SIGMA_Y = 0.05  # the sensors' noise standard deviation
ESS_WARN = 10.0  # an importance-sampling effective sample size below this is warned about


def _warn_if_collapsed(ess: float, n_prop: int) -> None:
    r"""A ``RuntimeWarning`` when the importance weights' effective sample size
    :math:`1/\sum_i \bar w_i^2` is below :data:`ESS_WARN`: the resampled ``z`` draws are then
    copies of a few proposals (one when ``ess`` ~ 1), a near point mass whose intervals (and
    the bands of ``u`` and ``kappa``) understate the uncertainty; the result reported it only
    as ``importance_ess``."""
    if ess < ESS_WARN:
        warnings.warn(
            f"importance sampling collapsed: effective sample size {ess:.1f} of {n_prop} "
            f"proposals (< {ESS_WARN:g}), so the z posterior is close to a point mass on a few "
            "proposals and its intervals, and the u and kappa bands, understate the "
            "uncertainty; the amortised GICNet proposal is far from the posterior: train "
            "longer (--steps) or draw more proposals (--proposals)",
            BayesphysRuntimeWarning,
            stacklevel=user_stacklevel(),
        )


def _kappa(x: torch.Tensor, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    from bayesphys.problems.rgnp import chebyshev

    t, _ = chebyshev(x, z.shape[-1])  # [N, 5]
    c = z @ t.T  # [S, N]
    return torch.nn.functional.softplus(u * c) + 0.1


def _mean_and_interval_bars(draws: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The mean ``[P]`` of ``draws`` ``[S, P]`` and the error-bar lengths ``[2, P]`` from it to
    the central 95 % interval's ends, never negative: when the importance weights collapse
    onto one proposal every draw is the same value, whose mean can differ from it by a
    rounding step (and a skewed set of draws can have its mean outside the interval); a
    negative length made matplotlib refuse the figure after all the work was done."""
    mean = draws.mean(0).numpy()
    lo, hi = np.quantile(draws.numpy(), [0.025, 0.975], 0)
    return mean, np.clip(np.stack([mean - lo, hi - mean]), 0.0, None)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="bayesphys run poisson-coefficient", description=DESCRIPTION)
    ap.add_argument("--smoke", action="store_true", help="tiny model, a few steps (< 30 s)")
    ap.add_argument("--device", type=_args.device, default="cpu")
    _args.add_out(ap, "poisson_coefficient")
    ap.add_argument(
        "--seed",
        type=_args.seed,
        default=0,
        help="the network's initial weights and training draws, and the new case observed; "
        "the labelled training set (poisson_sensor_data seed 1) stays fixed, as a shared "
        "training corpus would",
    )
    ap.add_argument("--steps", type=_args.positive_int, default=None)
    ap.add_argument("--sensors", type=_args.int_in(1, 2000), default=40)
    ap.add_argument(
        "--proposals",
        type=_args.positive_int,
        default=None,
        help="importance-sampling proposals (default 4000; 400 with --smoke)",
    )
    args = ap.parse_args(argv)
    with torch_threads(1):  # the small networks run fastest on one thread
        return _run(args)


def _run(args: argparse.Namespace) -> dict:
    from .._arviz_version import import_arviz

    az = import_arviz()
    import matplotlib.pyplot as plt

    from bayesphys.inference_data import ARVIZ_V1, build_inference_data, save_netcdf
    from bayesphys.neural_process import RandomGridNP
    from bayesphys.problems.rgnp import poisson_sensor_data, solve_poisson

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.smoke:
        model = RandomGridNP("poisson", "RGNP", size="smoke", device=args.device, seed=args.seed)
        steps = args.steps or 40
        data = poisson_sensor_data(200, seed=1)
    else:
        model = RandomGridNP("poisson", "RGNP", device=args.device, seed=args.seed)
        steps = args.steps or 3000
        data = poisson_sensor_data(1000, seed=1)
    fit = model.fit(data, steps=steps, progress=not args.smoke)

    # a new case, observed at random off-grid sensors
    rng = np.random.default_rng(offset_seed(1234, args.seed))  # wrapped: numpy takes >= 0
    z_true = rng.uniform(-1, 1, 5)
    w_true = np.array([rng.uniform(1, 2)])
    xf, uf = solve_poisson(z_true[None], w_true, n_nodes=801)
    x_obs = np.sort(rng.uniform(-0.9, 0.9, args.sensors))
    u_obs = np.interp(x_obs, xf, uf[0])
    y = u_obs + SIGMA_Y * rng.standard_normal(args.sensors)

    dt, dev = model.dtype, model.device
    prop = model.parameter_posterior(x_obs, y, w_true)  # amortised GICNet Gaussian
    # proposal and importance weights on the CPU (the likelihood runs on the model's device)
    mu, sd = prop.mean[0].double().cpu(), prop.stddev[0].double().cpu()
    gen = torch.Generator().manual_seed(args.seed)
    n_prop = args.proposals or (400 if args.smoke else 4000)
    q = torch.distributions.Normal(mu, 2 * sd.clamp_min(0.05))
    # proposal draws from ``gen`` (the seeded model leaves torch's global stream alone)
    zs = q.loc + q.scale * torch.randn(n_prop, mu.numel(), generator=gen, dtype=mu.dtype)
    inside = (zs.abs() < 1).all(-1)  # the uniform prior's support
    if not bool(inside.any()):  # every weight 0: torch.multinomial refused them unnamed
        raise _args.ExampleFailed(
            f"importance sampling: none of the {n_prop} proposals lies in the prior's support "
            f"[-1, 1]^{mu.numel()} (GICNet mean {mu.numpy().round(3).tolist()}, proposal sd "
            f"{q.scale.numpy().round(3).tolist()}); draw more proposals (--proposals) or train "
            "longer (--steps)"
        )
    zs = torch.where(inside.unsqueeze(-1), zs, torch.zeros_like(zs))
    with torch.no_grad():
        from bayesphys.neural_process import data_log_likelihood

        xo = torch.as_tensor(x_obs, dtype=dt, device=dev).unsqueeze(-1)
        yt = torch.as_tensor(y, dtype=dt, device=dev).expand(n_prop, -1)
        wt = torch.as_tensor(w_true, dtype=dt, device=dev).expand(n_prop, -1)
        ll = (
            data_log_likelihood(
                model.problem, model.forward_net, xo, yt, zs.to(dt).to(dev), wt, SIGMA_Y
            )
            .double()
            .cpu()
        )
    logw = ll - q.log_prob(zs).sum(-1)  # uniform prior on the box: constant inside
    logw = torch.where(inside, logw, torch.full_like(logw, -torch.inf))
    wts = torch.softmax(logw, 0)
    ess = float(1.0 / (wts**2).sum())
    _warn_if_collapsed(ess, n_prop)
    n_draw = 200 if args.smoke else 1000
    pick = torch.multinomial(wts, n_draw, replacement=True, generator=gen)
    z_draws = zs[pick]  # [draw, 5]

    # push draws through the forward GP: u and kappa bands on the mesh
    xm = torch.linspace(-1, 1, 201, dtype=dt, device=dev)
    post = model.posterior(
        xm,
        z=z_draws.to(dtype=dt, device=dev),
        w=torch.as_tensor(w_true, dtype=dt, device=dev).expand(n_draw, -1),
    )
    u_draws = post.sample((1,), generator=torch.Generator(device=dev).manual_seed(0))[0]
    u_draws = u_draws.double().cpu()
    k_draws = _kappa(xm.double().cpu(), u_draws, z_draws)
    xm_np = xm.double().cpu().numpy()
    u_true_m = np.interp(xm_np, xf, uf[0])
    k_true = _kappa(
        xm.double().cpu(), torch.as_tensor(u_true_m)[None], torch.as_tensor(z_true)[None]
    )[0].numpy()
    k_lo, k_hi = np.quantile(k_draws.numpy(), [0.025, 0.975], axis=0)
    k_mean = k_draws.mean(0).numpy()
    nearest = np.abs(xm_np[None, :] - np.asarray(x_obs)[:, None]).argmin(1)
    y_rep = u_draws[:, nearest]  # nearest-node replicate
    y_rep = y_rep + SIGMA_Y * torch.randn(y_rep.shape, generator=gen, dtype=y_rep.dtype)

    idata = build_inference_data(
        posterior={"z": z_draws[None], "kappa": k_draws[None], "u": u_draws[None]},
        posterior_predictive={"y": y_rep[None]},
        observed_data={"y": torch.as_tensor(y)},
        constant_data={"z_amortised_mean": mu, "z_amortised_sd": sd},
        coords={"param": [f"z{i}" for i in range(5)], "x": xm_np, "sensor": x_obs},
        dims={
            "z": ["param"],
            "kappa": ["x"],
            "u": ["x"],
            "y": ["sensor"],
            "z_amortised_mean": ["param"],
            "z_amortised_sd": ["param"],
        },
    )
    save_netcdf(idata, out / "poisson_coefficient.nc", attrs={"seed": args.seed})
    # ArviZ 1 (Python >= 3.12): hdi_prob became ci_prob, whose default kind is equal-tailed
    prob = {"ci_prob": 0.94, "ci_kind": "hdi"} if ARVIZ_V1 else {"hdi_prob": 0.94}
    summary = az.summary(idata, var_names=["z"], kind="stats", **prob)
    summary["truth"] = z_true
    print(summary.to_string())

    with closing_figures():
        fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
        # the draws of u and of kappa as posteriors: their 95% bands are the 2.5% and 97.5%
        # quantiles of the draws (for kappa, k_lo and k_hi above)
        u_post = SamplePosterior(u_draws[None], event_ndim=1)
        plot_bands(
            u_post, xm_np, levels=(0.95,), truth=u_true_m, ax=ax[0], band_label=NOISE_FREE_BAND
        )
        # the sensors are noisy, the band is of u: each sensor with its 95% noise bar
        plot_observations(
            ax[0],
            x_obs,
            y,
            SIGMA_Y,
            color="r",
            ms=3,
            alpha=0.7,
            label=f"sensors ±1.96σ (σ={SIGMA_Y:g})",
        )
        ax[0].set(xlabel="x", ylabel="u", title="field u")
        ax[0].legend(fontsize=7)
        k_post = SamplePosterior(k_draws[None], event_ndim=1)
        plot_bands(
            k_post, xm_np, levels=(0.95,), truth=k_true, ax=ax[1], band_label="95% band of kappa"
        )
        ax[1].set(xlabel="x", ylabel="kappa", title="coefficient kappa(u, x)")
        ax[1].legend(fontsize=7)
        zm, zerr = _mean_and_interval_bars(z_draws)
        ax[2].errorbar(np.arange(5), zm, yerr=zerr, fmt="o", label="IS posterior 95%")
        ax[2].errorbar(
            np.arange(5) + 0.15,
            mu.numpy(),
            yerr=2 * sd.numpy(),
            fmt="s",
            alpha=0.6,
            label="GICNet (amortised) ±2 sd",
        )
        ax[2].plot(np.arange(5), z_true, "kx", label="truth")
        ax[2].set_xticks(np.arange(5), [f"z{i}" for i in range(5)])
        ax[2].set(xlabel="index", ylabel="z_i", title="parameters z")
        # beside the error bars, not over them (the prior's support is [-1, 1])
        ax[2].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        fig.tight_layout()
        save_figure(fig, out / "poisson_coefficient.png", dpi=110)

    inner = slice(20, 181)  # kappa is weakly identified where u ~ 0 (near the boundary)
    res = {
        "seed": args.seed,
        "steps": fit.steps,
        "fit_seconds": fit.seconds,
        "kappa_rel_l2": float(np.linalg.norm(k_mean - k_true) / np.linalg.norm(k_true)),
        "kappa_coverage95_inner": float(
            np.mean((k_true[inner] >= k_lo[inner]) & (k_true[inner] <= k_hi[inner]))
        ),
        "u_rel_l2": float(
            np.linalg.norm(u_draws.mean(0).numpy() - u_true_m) / np.linalg.norm(u_true_m)
        ),
        "z_nse_is": float(((zm - z_true) ** 2).sum() / (z_true**2).sum()),
        "z_nse_amortised": float(((mu.numpy() - z_true) ** 2).sum() / (z_true**2).sum()),
        "importance_ess": ess,
        "summary": summary.reset_index().to_dict(orient="list"),
        "netcdf": str(out / "poisson_coefficient.nc"),
        "figure": str(out / "poisson_coefficient.png"),
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_text(out / "poisson_coefficient.json", json.dumps(res, indent=1, default=str))
    return res


if __name__ == "__main__":  # `bayesphys run` prints the result itself
    from .._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        print({k: v for k, v in _args.run_script(main).items() if k != "summary"})
