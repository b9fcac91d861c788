r"""The shared core's own end-to-end demo: a linear-Gaussian inverse problem.

Field :math:`u(x) = \sin(2\pi x) + 0.5\sin(6\pi x)` on ``n`` grid points, prior
:math:`u \sim \mathcal N(0, K)` with a squared-exponential kernel, noisy observations
:math:`y = H u + \varepsilon` at ``m`` sensors. The exact posterior is Gaussian:

.. math:: \Sigma_{post} = K - K H^\top (H K H^\top + \sigma^2 I)^{-1} H K, \quad
          \mu_{post} = K H^\top (H K H^\top + \sigma^2 I)^{-1} y .

The demo exports posterior draws, the posterior predictive at the sensors, the data and the
pointwise log likelihood to ArviZ, writes netCDF and a band plot, and reports accuracy and
coverage against the known truth.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ._files import closing_figures, save_figure
from ._plotting import NOISE_FREE_BAND, plot_observations
from .inference_data import build_inference_data, save_netcdf
from .metrics import crps_gaussian, interval_coverage, relative_l2
from .plots import plot_bands
from .problems.linear_gaussian import ConjugateGaussianField, linear_gaussian_problem

__all__ = ["demo"]


def demo(out_dir: Path, *, device: torch.device, seed: int = 0) -> list[dict]:
    """Run the core demo; write ``core.nc`` and ``core.png`` to ``out_dir``."""

    import matplotlib.pyplot as plt

    noise = 0.1
    prob = linear_gaussian_problem(seed=seed, device=device, noise=noise)
    model = ConjugateGaussianField(prob["x"], prob["idx"], prob["y"], noise=noise, device=device)
    model.fit(progress=False)  # type-II maximum likelihood for the kernel
    post = model.posterior()
    gen = torch.Generator(device=device).manual_seed(seed)
    draws = post.sample((1, 500), generator=gen)  # [chain, draw, n]
    at_sensors = draws[..., prob["idx"]]
    y_rep = at_sensors + noise * torch.randn(
        at_sensors.shape, generator=gen, device=device, dtype=at_sensors.dtype
    )
    loglik = torch.distributions.Normal(at_sensors, noise).log_prob(prob["y"])
    idata = build_inference_data(
        posterior={"u": draws},
        posterior_predictive={"y": y_rep},
        log_likelihood={"y": loglik},
        observed_data={"y": prob["y"]},
        coords={"x": prob["x"], "sensor": prob["x"][prob["idx"]]},
        dims={"u": ["x"], "y": ["sensor"]},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    save_netcdf(idata, out_dir / "core.nc", attrs={"seed": seed})
    lo, hi = post.interval(0.95)
    with closing_figures():
        fig, ax = plt.subplots(figsize=(6, 3))
        xs = prob["x"].cpu()
        # the mean, the 95% band (the interval scored below) and the truth
        plot_bands(post, xs, levels=(0.95,), truth=prob["u"], ax=ax, band_label=NOISE_FREE_BAND)
        # noisy data against the band of the noise-free field: each with its 95% noise bar
        plot_observations(ax, xs[prob["idx"].cpu()], prob["y"].cpu(), noise, ms=3)
        ax.set(xlabel="x", ylabel="u(x)", title="linear-Gaussian field: exact Gaussian posterior")
        ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, out_dir / "core.png", dpi=120)
    cov = float(interval_coverage(lo, hi, prob["u"]))
    return [
        {
            "component": "core",
            "problem": "linear-gaussian",
            "metric": "rel_l2",
            "value": float(relative_l2(post.mean, prob["u"])),
            "target": "< 0.2",
        },
        {
            "component": "core",
            "problem": "linear-gaussian",
            "metric": "coverage95",
            "value": cov,
            "target": "~0.95",
        },
        {
            "component": "core",
            "problem": "linear-gaussian",
            "metric": "crps",
            "value": float(crps_gaussian(post.mean, post.stddev, prob["u"])),
            "target": None,
        },
    ]
