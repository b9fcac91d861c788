r"""Inverse problem with the GP-HM solver: recover a diffusivity from noisy interior data.

Model: :math:`D\,u''(x) = f(x)` on :math:`[0, 1]`, :math:`u(0) = u(1) = 0`, known source
:math:`f = -4\pi^2 \sin 2\pi x - 18\pi^2 \sin 6\pi x`, unknown :math:`D > 0` (truth 0.5), and
:math:`n_{obs}` noisy interior observations :math:`y_i = u(x_i) + \epsilon_i`,
:math:`\epsilon_i \sim \mathcal N(0, \sigma^2)`.

1. A :class:`~bayesphys.gp_pde.GPPDESolver` is fitted to :math:`u'' = f` (i.e. :math:`D = 1`);
   its field posterior :math:`U_1 \sim \mathcal N(\bar U_1, \Sigma_U)` is exact GP conditioning
   on the boundary and collocation constraints.
2. The problem is linear in the source, so for any :math:`D` the solution is
   :math:`U_D = U_1 / D` (zero boundary data): :math:`y \mid D \sim \mathcal N(H\bar U_1/D,
   H\Sigma_U H^\top/D^2 + \sigma^2 I)`. The posterior of :math:`\log D` (flat prior on
   :math:`[\log 0.05, \log 5]`) is computed on a fine grid and sampled by inverse CDF.
3. Given each draw of :math:`D`, the field is drawn from its Gaussian conditional on :math:`y`.

Outputs: ``gp_pde_inverse.nc`` (ArviZ: ``D`` and ``u`` draws, observed ``y``, posterior
predictive), ``gp_pde_inverse.png`` (the field's 95 % band, against the exact solution too, and the
grid posterior density of :math:`D` with its draws).
"""

from __future__ import annotations

import argparse
import math
import pathlib

import numpy as np
import torch

from .._files import closing_figures, save_figure
from .._plotting import NOISE_FREE_BAND, plot_observations
from ..plots import plot_bands
from ..posterior import SamplePosterior
from . import _args

DESCRIPTION = (
    "GP-HM inverse problem: diffusivity D of D u'' = f from noisy interior data (ArviZ + bands)"
)

D_TRUE = 0.5


def _source(x):
    return -4 * math.pi**2 * torch.sin(2 * math.pi * x) - 18 * math.pi**2 * torch.sin(
        6 * math.pi * x
    )


def _exact(x, d=D_TRUE):
    return (torch.sin(2 * math.pi * x) + 0.5 * torch.sin(6 * math.pi * x)) / d


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="bayesphys run gp-pde-inverse", description=DESCRIPTION)
    ap.add_argument("--smoke", action="store_true", help="small grid, few steps (< 30 s)")
    ap.add_argument("--device", type=_args.device, default="cpu")
    _args.add_out(ap, "gp_pde_inverse")
    ap.add_argument("--seed", type=_args.seed, default=0)
    ap.add_argument(
        "--n-obs", type=_args.positive_int, default=12, help="observed interior grid points"
    )
    ap.add_argument("--noise", type=_args.nonnegative_float, default=0.05)
    args = ap.parse_args(argv)
    n = 48 if args.smoke else 96
    if args.n_obs > n - 2:
        ap.error(
            f"argument --n-obs: expected at most {n - 2} (interior grid points), received "
            f"{args.n_obs}"
        )

    import matplotlib.pyplot as plt

    from bayesphys._device import resolve_device
    from bayesphys.gp_pde import GPPDESolver
    from bayesphys.inference_data import build_inference_data, save_netcdf

    device = resolve_device(args.device)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    model = GPPDESolver(
        x=[x],
        source=_source,
        boundary=torch.zeros(n, dtype=torch.float64),
        num_mixtures=6,
        weighting="identity",
        jitter=1e-10,
        freq_scale=4.0,
        device=device,
        seed=args.seed,
    )
    res = model.fit(steps=60 if args.smoke else 200, progress=not args.smoke)
    field = model.field_posterior()  # the field's joint law on the grid: N(u1, cov)
    u1, cov = field.mean.reshape(-1), field.covariance.to_dense()
    # observations at interior grid points
    idx = torch.sort(torch.randperm(n - 2, generator=gen)[: args.n_obs] + 1).values.to(device)
    y = _exact(x[idx.cpu()]).to(device) + args.noise * torch.randn(
        args.n_obs, generator=gen, dtype=torch.float64
    ).to(device)
    hu = u1[idx]
    hch = cov[idx][:, idx]
    eye = torch.eye(args.n_obs, dtype=torch.float64, device=device)
    # posterior of log D on a grid
    logd = torch.linspace(math.log(0.05), math.log(5.0), 4000, dtype=torch.float64, device=device)
    dd = logd.exp()
    S = hch[None] / dd[:, None, None] ** 2 + args.noise**2 * eye
    r = y[None] - hu[None] / dd[:, None]
    Ls = torch.linalg.cholesky(S)
    sol = torch.cholesky_solve(r.unsqueeze(-1), Ls).squeeze(-1)
    loglik = -0.5 * (r * sol).sum(-1) - Ls.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    w = torch.softmax(loglik, 0)
    cdf = torch.cumsum(w, 0)
    ndraw = 200 if args.smoke else 1000
    uq = (
        torch.arange(ndraw, dtype=torch.float64, device=device)
        + torch.rand(ndraw, generator=gen, dtype=torch.float64).to(device)
    ) / ndraw
    k = torch.searchsorted(cdf, uq.clamp(max=float(cdf[-1]) - 1e-15))
    d_draws = dd[k]
    # field | D, y: Gaussian conditioning of N(u1/D, cov/D^2) on y
    u_draws = []
    chol_cov = torch.linalg.cholesky(
        cov + 1e-14 * float(cov.diagonal().max()) * torch.eye(n, dtype=torch.float64, device=device)
    )
    z = torch.randn(ndraw, n, generator=gen, dtype=torch.float64).to(device)
    e = args.noise * torch.randn(ndraw, args.n_obs, generator=gen, dtype=torch.float64).to(device)
    for i in range(ndraw):
        dv = d_draws[i]
        prior_draw = u1 / dv + (chol_cov @ z[i]) / dv  # draw from N(u1/D, cov/D^2)
        Si = hch / dv**2 + args.noise**2 * eye
        gain = torch.linalg.solve(Si, (cov[idx] / dv**2)).mT  # [n, n_obs]
        u_draws.append(prior_draw + gain @ (y - prior_draw[idx] - e[i]))  # Matheron update
    u_draws = torch.stack(u_draws)
    exact = _exact(x).to(device)
    lo, hi = torch.quantile(u_draws, 0.025, 0), torch.quantile(u_draws, 0.975, 0)
    coverage = float(((lo <= exact) & (exact <= hi)).double().mean())
    d_lo, d_hi = (
        float(v)
        for v in torch.quantile(
            d_draws, torch.tensor([0.025, 0.975], dtype=torch.float64, device=device)
        )
    )
    y_rep = u_draws[:, idx] + args.noise * torch.randn(
        ndraw, args.n_obs, generator=gen, dtype=torch.float64
    ).to(device)
    idata = build_inference_data(
        posterior={"D": d_draws[None], "u": u_draws[None]},
        posterior_predictive={"y": y_rep[None]},
        observed_data={"y": y},
        constant_data={"x_obs": x[idx.cpu()]},
        coords={"x": x.numpy(), "obs": np.arange(args.n_obs)},
        dims={"u": ["x"], "y": ["obs"], "x_obs": ["obs"]},
    )
    nc = save_netcdf(idata, out / "gp_pde_inverse.nc", attrs={"seed": args.seed})
    with closing_figures():
        fig, ax = plt.subplots(1, 3, figsize=(14, 3.6))
        xs, xo = x.numpy(), x[idx.cpu()].numpy()
        yo = y.cpu().numpy()
        # the draws of u | y as a posterior: its 95% band is their 2.5% and 97.5% quantiles
        # (lo and hi above), that of u - u_exact the same band shifted by the exact field
        u_post = SamplePosterior(u_draws[None], event_ndim=1)
        err_post = SamplePosterior((u_draws - exact)[None], event_ndim=1)
        bands = dict(levels=(0.95,), band_label=NOISE_FREE_BAND, legend=False)
        plot_bands(u_post, xs, ax=ax[0], **bands)
        # dashed over the mean, as plot_bands draws a truth, so that both stay visible
        ax[0].plot(xs, exact.cpu().numpy(), "k--", lw=1, label=f"exact (D={D_TRUE})")
        # the observations carry noise the band of u does not: their own 95% noise bars
        plot_observations(ax[0], xo, yo, args.noise)
        ax[0].set(xlabel="x", ylabel="u", title="field")
        ax[0].legend(fontsize=7)
        # the band is narrow against the field's range: read it against the exact solution
        plot_bands(err_post, xs, ax=ax[1], **bands)
        ax[1].axhline(0, color="k", ls="--", lw=1, label="exact")
        plot_observations(ax[1], xo, yo - _exact(x[idx.cpu()]).numpy(), args.noise)
        ax[1].set(xlabel="x", ylabel="u - u_exact", title="field minus the exact solution")
        # head room for the key above the noise bars
        y0, y1 = ax[1].get_ylim()
        ax[1].set_ylim(y0, y1 + 0.4 * (y1 - y0))
        ax[1].legend(fontsize=7, ncol=2, loc="upper center")
        # the grid posterior itself (a density in D: the log-D grid's weights over D d(log D))
        keep = ((cdf > 1e-4) & (cdf < 1 - 1e-4)).cpu().numpy()
        keep = np.convolve(keep, np.ones(41), "same") > 0  # a margin either side
        dens = (w / (dd * (logd[1] - logd[0]))).cpu().numpy()
        ax[2].plot(dd.cpu().numpy()[keep], dens[keep], "C0", label="posterior density")
        ax[2].plot(
            d_draws.cpu().numpy(),
            np.zeros(ndraw),
            "|",
            color="C0",
            ms=10,
            alpha=0.3,
            label="posterior draws",
        )
        ax[2].axvline(D_TRUE, color="k", ls="--", label="true D")
        ax[2].set(xlabel="D", ylabel="posterior density", title="diffusivity D")
        ax[2].legend(fontsize=7)
        fig.tight_layout()
        png = out / "gp_pde_inverse.png"
        save_figure(fig, png, dpi=100)
    summary = {
        "seed": args.seed,
        "D_true": D_TRUE,
        "D_mean": float(d_draws.mean()),
        "D_ci95": (d_lo, d_hi),
        "D_covered": d_lo <= D_TRUE <= d_hi,
        "field_coverage95": coverage,
        "forward_fit_seconds": res.seconds,
        "netcdf": str(nc),
        "png": str(png),
    }
    return summary


if __name__ == "__main__":  # `bayesphys run` prints the returned summary itself
    from .._console import console_script

    with console_script():  # prints on any console; quiet when a reader leaves early
        print(main())
