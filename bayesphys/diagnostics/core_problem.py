r"""The shared core's conjugate linear-Gaussian family, as an SBC simulator.

Prior :math:`u \sim \mathcal N(0, K)` on ``n = 101`` grid points of ``[0, 1]`` with the
squared-exponential kernel :math:`K_{ij} = \exp(-(x_i-x_j)^2 / 2\ell^2)`, :math:`\ell = 0.08`;
data :math:`y = u[\mathrm{idx}] + \varepsilon`, :math:`\varepsilon \sim \mathcal N(0, 0.1^2 I)`
at the ``m = 30`` sensors of :func:`bayesphys.problems.linear_gaussian.linear_gaussian_problem`. The
exact posterior (:func:`bayesphys.problems.linear_gaussian.posterior_for`) makes SBC ranks exactly
uniform; ``inflate < 1`` scales its standard deviations (overconfident), ``shift`` moves its mean by
``shift`` posterior standard deviations (biased) — deliberately wrong posteriors for tests.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_int, check_scalar, check_seed
from ..posterior import GaussianPosterior
from ..problems.linear_gaussian import linear_gaussian_problem, posterior_for
from .summaries import Summary, probe, total_mass

__all__ = ["CoreFamily"]


def _field_max(u: Tensor) -> Tensor:
    """The summary ``max``: the largest value of the field, ``[*S, n] -> [*S]`` (a function, not
    a lambda, so that the family's summaries pickle)."""
    return u.amax(-1)


class CoreFamily:
    """Simulator + exact/deliberately wrong inference for the core linear-Gaussian problem.

    ``simulate(n, seed=) -> (u [n, 101], y [n, 30])``; ``infer(y [30]) -> GaussianPosterior``
    (event ``(101,)``); ``summaries`` probes ``u(0.25)``, ``u(0.5)``, ``u(0.9)``, the mass
    :math:`\\int_0^1 u\\,dx` (trapezoid) and :math:`\\max_x u`.

    ``noise``, ``lengthscale`` and ``inflate`` finite and ``> 0``, ``shift`` finite: a
    negative ``inflate`` or ``lengthscale`` was used as its absolute value (both enter
    squared), ``inflate = 0`` gave a posterior of zero spread, and ``noise = 0`` or a negative
    ``lengthscale`` was refused only by the first ``infer``.
    """

    def __init__(
        self,
        n: int = 101,
        m: int = 30,
        noise: float = 0.1,
        lengthscale: float = 0.08,
        inflate: float = 1.0,
        shift: float = 0.0,
    ):
        noise = check_scalar("noise", noise, minimum=0.0, strict=True)
        lengthscale = check_scalar("lengthscale", lengthscale, minimum=0.0, strict=True)
        inflate = check_scalar("inflate", inflate, minimum=0.0, strict=True)
        shift = check_scalar("shift", shift)
        prob = linear_gaussian_problem(n=n, m=m, noise=noise, seed=0)
        self.x, self.idx = prob["x"], prob["idx"]
        self.noise, self.lengthscale = noise, lengthscale
        self.inflate, self.shift = inflate, shift
        k = torch.exp(-0.5 * (self.x[:, None] - self.x[None, :]) ** 2 / lengthscale**2)
        self.prior_chol = torch.linalg.cholesky(k + 1e-8 * torch.eye(n, dtype=k.dtype))

    def simulate(self, n: int, *, seed: int) -> tuple[Tensor, Tensor]:
        """``n`` prior fields ``[n, 101]`` and their sensor data ``[n, 30]``; ``seed`` an int
        (a float such as 1.7 was truncated to the seed 1)."""
        n = check_int("n", n, minimum=0)
        gen = torch.Generator().manual_seed(check_seed("seed", seed))
        z = torch.randn(n, self.x.numel(), generator=gen, dtype=torch.float64)
        u = z @ self.prior_chol.mT
        y = u[:, self.idx] + self.noise * torch.randn(
            n, self.idx.numel(), generator=gen, dtype=torch.float64
        )
        return u, y

    def infer(self, y: Tensor) -> GaussianPosterior:
        """The exact posterior given ``y [30]``, then the deliberate ``inflate``/``shift``."""
        post = posterior_for(self.x, self.idx, y, self.noise, lengthscale=self.lengthscale)
        if self.inflate == 1.0 and self.shift == 0.0:
            return post
        mean = post.mean + self.shift * post.stddev
        return GaussianPosterior(mean, post.covariance * self.inflate**2)

    def summaries(self) -> dict[str, Summary]:
        """``{name: [*S, 101] -> [*S]}``."""
        n = self.x.numel()
        w = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        w[0] = w[-1] = 0.5 / (n - 1)
        return {
            "u(0.25)": probe(round(0.25 * (n - 1))),
            "u(0.5)": probe(round(0.5 * (n - 1))),
            "u(0.9)": probe(round(0.9 * (n - 1))),
            "mass": total_mass(w),
            "max": _field_max,
        }
