r"""Inverse problem: the Stefan front position (and u*) from sparse noisy sensors.

A meta-learned GP (Step 1, trained across Stefan solutions with sensor noise) is conditioned on
one unseen function's 10 x 10 noisy sensor readings; Step 2 conditions the t = 0.05 slice on
the total mass :math:`\int u\,dx = b(t)`, here rebuilt from the boundary inflow
(:math:`b(t) = \int_0^t F|_{x=0}\,ds`) and trusted to a physical tolerance ``--mass-tol``.
The front is the first grid point where a posterior draw is :math:`\le` ``--front-level``
(default 0, the paper's definition); each front draw :math:`x^*` gives :math:`u^*` by
inverting :math:`x^* = \alpha(u^*)\sqrt t`. Ahead of the front the truth is exactly 0, so
with level 0 even an exact posterior mean with any noise puts the first point :math:`\le 0`
about one grid spacing past the front on average (each point is :math:`\le 0` with
probability 1/2); a level inside the jump, e.g. ``--front-level 0.25`` (below half of every
:math:`u^*` of the training range), reads the jump itself.
Posterior predictive: the sensors read the field at 10 times x 10 positions with i.i.d.
Gaussian noise of sd ``--noise`` (the noise the data were made with), so a replicate is
:math:`y^{rep}_s = u(t_s, x_s) + \sigma\varepsilon_s`, :math:`\varepsilon_s \sim N(0, 1)`, with
:math:`u` a draw of the updated field on the 201-point grid merged with the sensor positions,
at each sensor time (each slice conditioned on its own :math:`b(t)`, same ``--mass-tol``), and
the pointwise log-likelihood is :math:`\log N(y_s;\,u(t_s, x_s), \sigma^2)`.
Outputs: ``stefan_front.nc`` (InferenceData: ``posterior`` the updated field ``u``,
``front``, ``u_star``; ``prior`` the Step-1 field ``u`` and ``front`` before the update;
``observed_data``/``posterior_predictive``/``log_likelihood`` ``y_sensors [sensor]``, the
last left out when ``--noise 0``) and ``stefan_front.png`` (90 % bands before and after the
update, front histograms).

The ``prior`` group is the prior of the conservation update (ProbConserv's Step 2 is a
Bayesian update of the Step-1 Gaussian with the constraint as its likelihood): draws of the
Step-1 posterior, conditioned on the sensors but not on the mass, not draws from a data-free
prior; ArviZ's prior-posterior comparisons (``az.plot_dist_comparison`` in ArviZ 0.x) show
the front before and after the update. The group's ``description`` attribute says so in the
file.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from .._files import closing_figures, save_figure
from . import _args

DESCRIPTION = (
    "ProbConserv: Stefan front position and u* from sparse noisy sensors (ArviZ + bands plot)"
)
STEP1_GROUP_NOTE = (
    "Step-1 posterior (before the conservation update): draws of the field u and its front "
    "conditioned on the sensors but not on the mass; the prior of ProbConserv's Step-2 "
    "update, not draws from a data-free prior"
)


def _u_star_from_front(front: np.ndarray, t: float) -> np.ndarray:
    r""":math:`u^*` with :math:`\alpha(u^*)\sqrt t` = ``front`` (each value), on all of (0, 1).

    :math:`\alpha` falls from :math:`\infty` to 0 as :math:`u^*` rises from 0 to 1, so every
    front :math:`x^* > 0` has one :math:`u^*`; it is found by bisection to ~1e-15 (an
    interpolation table on [0.2, 0.95] clamped every front outside its range to an end, so a
    ``--u-star 0.1`` run reported its draws piled at 0.2)."""
    from bayesphys.problems.gpme import stefan_constants

    xs = torch.as_tensor(np.asarray(front, dtype=np.float64))
    lo, hi = torch.zeros_like(xs), torch.ones_like(xs)
    for _ in range(50):  # 2**-50: mid stays strictly inside (0, 1) in float64
        mid = 0.5 * (lo + hi)
        alpha, _ = stefan_constants(mid)
        beyond = alpha * t**0.5 > xs  # mid's front lies past x*: u* is larger than mid
        lo, hi = torch.where(beyond, mid, lo), torch.where(beyond, hi, mid)
    return (0.5 * (lo + hi)).numpy()


def _front_bins(values: np.ndarray, dx: float) -> np.ndarray:
    """Histogram edges of width ``dx`` (the grid spacing: the front draws are grid points, each
    at a bin's centre) spanning every value in ``values``."""
    lo, hi = float(np.min(values)), float(np.max(values))
    n = int(np.ceil((hi - lo) / dx - 1e-9)) + 1
    return lo - dx / 2 + dx * np.arange(n + 1)


def _sensor_predictive(
    model, data, *, n: int, noise: float, mass_tol: float, u_star: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Replicated readings ``y_rep [n, Ns]`` of the ``Ns`` sensors ``data.x_context[0]``
    (columns ``t, x``) and the log-likelihood ``[n, Ns]`` of the observed ``data.y_context[0]``
    (``None`` when ``noise == 0``: no density), from ``n`` draws of the updated field.

    The field is the ProbConserv posterior at the sensor times (batch ``(1, nt)``) on the
    201-point grid merged with the sensor positions (event ``(nx,)``), each slice conditioned
    on its :math:`b(t)` from the boundary inflow, read at the sensors; the readings add
    :math:`N(0, \mathrm{noise}^2)`. Seeded by ``seed`` (its own stream: the other draws of the
    example are unchanged).
    """
    from bayesphys import stream_seed
    from bayesphys.problems.gpme import mass_from_fluxes

    prob = model.problem
    xs = data.x_context[0].to(torch.float64)  # [Ns, 2]
    times, it = torch.unique(xs[:, 0], return_inverse=True)
    grid = prob.grid(201).to(torch.float64)
    x, ix = torch.unique(torch.cat([grid, xs[:, 1]]), return_inverse=True)
    ix = ix[grid.numel() :]  # each sensor's position on the merged grid
    b = torch.tensor(
        [[mass_from_fluxes(prob, float(t), u_star) for t in times]], dtype=torch.float64
    )
    post = model.posterior(data, t=times, x=x, mass=b, sigma_g=mass_tol, relative=False)
    dev = post.mean.device
    gen = torch.Generator(device=dev).manual_seed(stream_seed(seed, "stefan-sensor-replicates"))
    f = post.sample((n,), generator=gen)[:, 0, it.to(dev), ix.to(dev)]  # [n, Ns]
    y_rep = f + noise * torch.randn(f.shape, generator=gen, device=dev, dtype=f.dtype)
    if noise == 0:
        return y_rep, None
    y = data.y_context[0].to(f)
    return y_rep, torch.distributions.Normal(f, noise).log_prob(y)


def main(argv: list[str] | None = None) -> dict:
    from bayesphys import resolve_device, save_netcdf
    from bayesphys.probconserv import ProbConserv, shock_posterior, slice_scores
    from bayesphys.probconserv._demo import STEP1_COLOUR, STEP1_NAME, UPDATE_COLOUR, band_pair
    from bayesphys.problems.gpme import make_dataset, mass_from_fluxes, stefan_front

    ap = argparse.ArgumentParser(prog="bayesphys run stefan-front", description=DESCRIPTION)
    ap.add_argument("--smoke", action="store_true", help="tiny training (< 30 s)")
    ap.add_argument("--device", type=_args.device, default="cpu")
    _args.add_out(ap, "stefan_front")
    ap.add_argument("--seed", type=_args.seed, default=0)
    ap.add_argument(
        "--u-star",
        type=_args.float_in(0.0, 1.0),
        default=0.6,
        help="phase-change level u* (k = 1 where u >= u*), in (0, 1)",
    )
    ap.add_argument("--noise", type=_args.nonnegative_float, default=0.01, help="sensor noise sd")
    ap.add_argument(
        "--mass-tol",
        type=_args.float_in(0.0, math.inf, lo_open=False, hi_open=False, finite=False),
        default=1e-4,
        help="sd of b(t) (absolute)",
    )
    ap.add_argument(
        "--front-level",
        type=_args.nonnegative_float,
        default=0.0,
        help="front = first grid point where a draw is <= this level (0: the paper's definition)",
    )
    args = ap.parse_args(argv)
    if not 0.0 <= args.front_level < args.u_star:
        ap.error(
            f"argument --front-level: expected in [0, u*) = [0, {args.u_star}) (inside the jump), "
            f"received {args.front_level}"
        )
    dev = resolve_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = ProbConserv(
        "stefan",
        step1="gp",
        noise_std=args.noise,
        device=dev,
        seed=args.seed,
        gp_width=16 if args.smoke else 32,
    )
    fit = model.fit(steps=40 if args.smoke else 800, progress=not args.smoke)
    prob = model.problem
    t = prob.table_time
    data = make_dataset(prob, params=[args.u_star], seed=args.seed + 99, noise_std=args.noise)
    x = prob.grid(201)
    b = torch.tensor([[mass_from_fluxes(prob, t, args.u_star)]], dtype=torch.float64)
    before = model.posterior(data, method="none")
    after = model.posterior(data, mass=b, sigma_g=args.mass_tol, relative=False)
    truth = prob.solution(t, x, data.params[:, None])[:, None]
    n = 100 if args.smoke else 1000
    fronts = {
        k: shock_posterior(p, x.to(dev), n, seed=args.seed, threshold=args.front_level)
        .reshape(-1)
        .cpu()
        for k, p in (("before", before), ("after", after))
    }
    true_front = float(stefan_front(t, args.u_star))
    us = _u_star_from_front(fronts["after"].numpy(), t)

    draws_u = after.sample((n,), generator=torch.Generator(device=dev).manual_seed(args.seed))
    draws_u0 = before.sample((n,), generator=torch.Generator(device=dev).manual_seed(args.seed))
    y_rep, log_lik = _sensor_predictive(
        model,
        data,
        n=n,
        noise=args.noise,
        mass_tol=args.mass_tol,
        u_star=args.u_star,
        seed=args.seed,
    )
    from bayesphys.inference_data import build_inference_data

    idata = build_inference_data(
        posterior={
            "u": draws_u.reshape(1, n, -1),
            "front": fronts["after"].reshape(1, n),
            "u_star": us.reshape(1, n),
        },
        extra_groups={
            "prior": {"u": draws_u0.reshape(1, n, -1), "front": fronts["before"].reshape(1, n)}
        },
        posterior_predictive={"y_sensors": y_rep.reshape(1, n, -1)},
        log_likelihood=None if log_lik is None else {"y_sensors": log_lik.reshape(1, n, -1)},
        observed_data={"y_sensors": data.y_context[0]},
        constant_data={"x_sensors": data.x_context[0], "u_true": truth.reshape(-1)},
        coords={"x": x.numpy()},
        dims={
            "u": ["x"],
            "y_sensors": ["sensor"],
            "x_sensors": ["sensor", "coord"],
            "u_true": ["x"],
        },
    )
    # what "prior" holds, in the file itself (readers take a prior group for data-free draws)
    idata.prior.attrs["description"] = STEP1_GROUP_NOTE
    nc = save_netcdf(idata, out / "stefan_front.nc", attrs={"seed": args.seed})

    import matplotlib.pyplot as plt

    with closing_figures():
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        xs = x.numpy()
        band_pair(ax[0], xs, before, after, (STEP1_NAME, "ProbConserv"), (0, 0))
        ax[0].plot(xs, truth.reshape(-1), "k--", label="exact")
        ax[0].set(xlabel="x", ylabel=f"u(t={t}, x)", title="field before / after the update")
        ax[0].legend(fontsize=7)
        f0, f1 = fronts["before"].numpy(), fronts["after"].numpy()
        bins = _front_bins(np.concatenate([f0, f1, [true_front]]), float(xs[1] - xs[0]))
        ax[1].hist(f0, bins, color=STEP1_COLOUR, alpha=0.35, label=STEP1_NAME)
        ax[1].hist(
            f1, bins, histtype="step", hatch="///", color=UPDATE_COLOUR, lw=1, label="ProbConserv"
        )
        ax[1].axvline(true_front, color="k", ls="--", label="true front position")
        ax[1].set(xlabel="front position", ylabel="draws", title="front-position posterior")
        ax[1].legend(fontsize=7)
        fig.tight_layout()
        png = out / "stefan_front.png"
        save_figure(fig, png, dpi=110)

    sc0 = slice_scores(before, truth, x, b)
    sc1 = slice_scores(after, truth, x, b)
    res = {
        "seed": args.seed,
        "true_front": true_front,
        "front_level": args.front_level,
        "front_before": (float(fronts["before"].mean()), float(fronts["before"].std())),
        "front_after": (float(fronts["after"].mean()), float(fronts["after"].std())),
        "u_star_after": (float(us.mean()), float(us.std())),
        "mse_before": float(sc0["mse"].mean()),
        "mse_after": float(sc1["mse"].mean()),
        "ce_before": float(sc0["ce"].mean()),
        "ce_after": float(sc1["ce"].mean()),
        "fit_seconds": fit.seconds,
        "netcdf": str(nc),
        "png": str(png),
    }
    return res


if __name__ == "__main__":  # pragma: no cover  (`bayesphys run` prints the result itself)
    from .._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        for k, v in main().items():
            print(f"{k}: {v}")
