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

import math
from pathlib import Path

import torch

from .inference_data import build_inference_data, save_netcdf
from .metrics import crps_gaussian, interval_coverage, relative_l2
from .posterior import GaussianPosterior

__all__ = ["linear_gaussian_problem", "demo"]


def linear_gaussian_problem(
    n: int = 101, m: int = 30, noise: float = 0.1, seed: int = 0, device: torch.device | str = "cpu"
):
    """Grid ``x [n]``, truth ``u [n]``, sensor indices ``idx [m]`` and data ``y [m]``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    u = torch.sin(2 * math.pi * x) + 0.5 * torch.sin(6 * math.pi * x)
    idx = torch.sort(torch.randperm(n, generator=gen)[:m]).values
    y = u[idx] + noise * torch.randn(m, generator=gen, dtype=torch.float64)
    return {k: v.to(device) for k, v in dict(x=x, u=u, idx=idx, y=y).items()}


def log_marginal_likelihood(x, idx, y, noise: float, lengthscale: float) -> float:
    """:math:`\\log \\mathcal N(y \\mid 0, H K H^\top + \\sigma^2 I)` for a lengthscale."""
    xo = x[idx]
    koo = torch.exp(-0.5 * (xo[:, None] - xo[None, :]) ** 2 / lengthscale**2)
    koo = koo + noise**2 * torch.eye(len(idx), dtype=x.dtype, device=x.device)
    mvn = torch.distributions.MultivariateNormal(torch.zeros_like(y), covariance_matrix=koo)
    return float(mvn.log_prob(y))


def posterior_for(x, idx, y, noise: float, lengthscale: float = 0.08, outputscale: float = 1.0):
    """Exact GP posterior over the grid given sensor data (a :class:`GaussianPosterior`)."""
    k = outputscale * torch.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / lengthscale**2)
    kxo = k[:, idx]
    koo = k[idx][:, idx] + noise**2 * torch.eye(len(idx), dtype=x.dtype, device=x.device)
    chol = torch.linalg.cholesky(koo)
    a = torch.cholesky_solve(kxo.mT, chol)  # [m, n]
    mean = (a.mT @ y[:, None]).squeeze(-1)
    cov = k - kxo @ a
    cov = 0.5 * (cov + cov.mT) + 1e-9 * torch.eye(len(x), dtype=x.dtype, device=x.device)
    return GaussianPosterior(mean, cov)


def demo(out_dir: Path, *, device: torch.device, seed: int = 0) -> list[dict]:
    """Run the core demo; write ``core.nc`` and ``core.png`` to ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noise = 0.1
    prob = linear_gaussian_problem(seed=seed, device=device, noise=noise)
    grid = torch.logspace(-2, 0, 40).tolist()  # type-II ML for the lengthscale
    ell = max(
        grid, key=lambda e: log_marginal_likelihood(prob["x"], prob["idx"], prob["y"], noise, e)
    )
    post = posterior_for(prob["x"], prob["idx"], prob["y"], noise, lengthscale=ell)
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
    save_netcdf(idata, out_dir / "core.nc")
    lo, hi = post.interval(0.95)
    fig, ax = plt.subplots(figsize=(6, 3))
    xs = prob["x"].cpu()
    ax.fill_between(xs, lo.cpu(), hi.cpu(), alpha=0.3, label="95% band")
    ax.plot(xs, post.mean.cpu(), label="posterior mean")
    ax.plot(xs, prob["u"].cpu(), "k--", lw=1, label="truth")
    ax.plot(xs[prob["idx"].cpu()], prob["y"].cpu(), "o", ms=3, label="data")
    ax.set_xlabel("x")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "core.png", dpi=120)
    plt.close(fig)
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
