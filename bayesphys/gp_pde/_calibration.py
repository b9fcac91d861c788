r"""Calibration hook (issue 9) for the GP PDE solver: a 1-D Poisson benchmark family.

Family (the solver's own prior, so a correct posterior must be calibrated):
:math:`u \sim \mathcal{GP}(0, k)` on :math:`[0, 1]` with ``k`` a fixed
:class:`~bayesphys.gp_pde.kernels.SpectralMixture1d` (``Q = 2``: one trend component at
:math:`\mu = 0` and one at :math:`\mu = 2`); data are the source
:math:`f = -u''` at ``n_col`` interior collocation points observed with collocation noise
(nugget) :math:`\tau`, :math:`y_f = f + \tau\varepsilon`, and the two boundary values
:math:`u(0), u(1)`. The parameter :math:`\theta` is :math:`u` on ``n_probe`` equispaced probe
points, ``[n_probe]``.

Inference is the exact GP-PDE conditional at fixed hyperparameters (what
:class:`~bayesphys.gp_pde.GPPDESolver` computes for linear PDEs), with the joint covariances
from the kernel's derivatives: :math:`\mathrm{cov}(u(x), u(x')) = k(x - x')`,
:math:`\mathrm{cov}(-u''(x), u(x')) = -k''(x - x')`,
:math:`\mathrm{cov}(-u''(x), -u''(x')) = k^{(4)}(x - x')`. The nugget ``tau`` is an explicit
parameter: with ``tau`` equal to the simulation noise the posterior is well specified; with the
solver's per-factor jitter floor instead (``infer_tau`` tiny) the intervals are not informative.

Summaries: :math:`u` at three probe points and the trapezoid integral :math:`\int_0^1 u`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bayesphys.diagnostics import calibration_rows
from bayesphys.diagnostics.summaries import probe, total_mass
from bayesphys.posterior import GaussianPosterior

from .kernels import SpectralMixture1d

DTYPE = torch.float64


def family_kernel() -> SpectralMixture1d:
    """The fixed prior kernel of the family (``Q = 2``, stm envelope, length scale 1/3)."""
    k = SpectralMixture1d(
        2,
        kind="stm",
        mu=torch.tensor([0.0, 2.0]),
        log_w=torch.tensor([0.0, math.log(0.5)]),
        log_a=math.log(3.0),
        dtype=DTYPE,
    )
    return k.requires_grad_(False)


class PoissonFamily:
    r"""1-D Poisson ``-u'' = f`` with GP-prior solutions; see the module docstring.

    ``n_col`` collocation points (interior), ``n_probe`` probe points (incl. the boundary),
    ``tau = tau_rel * sd(f)`` the simulation noise on the source (relative to the source's prior
    sd), ``infer_tau = infer_tau_rel * sd(f)`` the nugget used by inference (default ``tau``).
    """

    def __init__(
        self,
        n_col: int = 24,
        n_probe: int = 21,
        tau_rel: float = 0.1,
        infer_tau_rel: float | None = None,
    ) -> None:
        self.kernel = family_kernel()
        self.xc = torch.linspace(0, 1, n_col + 2, dtype=DTYPE)[1:-1]
        self.xb = torch.tensor([0.0, 1.0], dtype=DTYPE)
        self.xp = torch.linspace(0, 1, n_probe, dtype=DTYPE)
        k = self.kernel.deriv
        d = lambda a, b: a[:, None] - b[None, :]  # noqa: E731
        self.k_ff = k(d(self.xc, self.xc), 4)  # cov(f, f)
        self.k_fb = -k(d(self.xc, self.xb), 2)  # cov(f, u_b)
        self.k_fp = -k(d(self.xc, self.xp), 2)  # cov(f, u_p)
        self.k_bb = k(d(self.xb, self.xb), 0)
        self.k_bp = k(d(self.xb, self.xp), 0)
        self.k_pp = k(d(self.xp, self.xp), 0)
        f_sd = float(self.k_ff.diagonal().mean().sqrt())  # prior sd of the source
        self.tau = float(tau_rel) * f_sd
        self.infer_tau = self.tau if infer_tau_rel is None else float(infer_tau_rel) * f_sd

    def _joint(self) -> Tensor:
        top = torch.cat([self.k_ff, self.k_fb, self.k_fp], 1)
        mid = torch.cat([self.k_fb.T, self.k_bb, self.k_bp], 1)
        bot = torch.cat([self.k_fp.T, self.k_bp.T, self.k_pp], 1)
        return torch.cat([top, mid, bot], 0)

    def simulate(self, n: int, *, seed: int) -> tuple[Tensor, list[dict]]:
        """``theta [n, n_probe]`` (u at probes) and ``data[i] = {"f": [n_col], "g": [2]}``."""
        g = torch.Generator().manual_seed(int(seed))
        c = self._joint()
        lam, vec = torch.linalg.eigh(c)  # PSD root: no jitter, so u(0), u(1) equal g exactly
        root = vec * lam.clamp_min(0).sqrt()
        z = root @ torch.randn(c.shape[0], n, generator=g, dtype=DTYPE)
        nc, nb = self.xc.numel(), 2
        f = z[:nc] + self.tau * torch.randn(nc, n, generator=g, dtype=DTYPE)
        data = [{"f": f[:, i], "g": z[nc : nc + nb, i]} for i in range(n)]
        theta = z[nc + nb :].T.clone()
        theta[:, 0], theta[:, -1] = z[nc], z[nc + 1]  # same variables as g (drop eigh roundoff)
        return theta, data

    def infer(self, data: dict) -> GaussianPosterior:
        r"""Exact conditional of ``u`` at the probes given ``(y_f, g)``: mean ``[n_probe]``,
        covariance ``[n_probe, n_probe]``.

        With :math:`y = (y_f, g)`, :math:`K_{yy} = \begin{pmatrix}K_{ff} + \tau^2 I & K_{fb}\\
        K_{bf} & K_{bb} + 10^{-10} I\end{pmatrix}` (the nugget :math:`\tau` = ``infer_tau`` on
        the source block; the boundary values are exact up to a :math:`10^{-10}` jitter) and
        :math:`K_{yp}` the covariances with the probes: mean :math:`K_{yp}^\top K_{yy}^{-1} y`,
        covariance :math:`K_{pp} - K_{yp}^\top K_{yy}^{-1} K_{yp}`, symmetrised, plus
        :math:`10^{-12} I`."""
        nc = self.xc.numel()
        kyy = torch.cat(
            [
                torch.cat(
                    [self.k_ff + self.infer_tau**2 * torch.eye(nc, dtype=DTYPE), self.k_fb], 1
                ),
                torch.cat([self.k_fb.T, self.k_bb + 1e-10 * torch.eye(2, dtype=DTYPE)], 1),
            ],
            0,
        )
        kyp = torch.cat([self.k_fp, self.k_bp], 0)
        y = torch.cat([data["f"], data["g"]])
        lc = torch.linalg.cholesky(kyy)
        a = torch.cholesky_solve(kyp, lc)  # [n_y, n_probe]
        mean = a.T @ y
        cov = self.k_pp - kyp.T @ a
        cov = 0.5 * (cov + cov.T) + 1e-12 * torch.eye(cov.shape[0], dtype=DTYPE)
        return GaussianPosterior(mean, cov)

    def summaries(self) -> dict:
        n = self.xp.numel()
        h = 1.0 / (n - 1)
        w = torch.full((n,), h, dtype=DTYPE)
        w[0] = w[-1] = h / 2
        return {
            "u(0.25)": probe((n - 1) // 4),
            "u(0.5)": probe((n - 1) // 2),
            "u(0.75)": probe(3 * (n - 1) // 4),
            "integral": total_mass(w),
        }


def simulate(n: int, *, seed: int) -> tuple[Tensor, list[dict]]:
    """Default family's simulator (``PoissonFamily()``)."""
    return PoissonFamily().simulate(n, seed=seed)


def calibrate_rows(quick: bool, seed: int) -> list[dict]:
    """Two posteriors: the well-specified one (nugget = simulation noise) and the jitter-floor
    one (nugget 1e-6 sd(f): the solver's default of trusting the source exactly), on data with
    10% source noise - the second is expected to be overconfident. A row each, and after a
    row that :func:`~bayesphys.diagnostics.is_calibrated` rejects, its ``affine`` and
    ``shape`` recalibrated rows (fitted on 50 held-out simulations, quick; 200 full)."""
    n_sims, n_draws = (100, 49) if quick else (400, 99)
    rows = []
    for label, rel in (("gp-pde exact (nugget=tau)", None), ("gp-pde jitter-only", 1e-6)):
        fam = PoissonFamily(infer_tau_rel=rel)
        rows += calibration_rows(
            fam.simulate,
            fam.infer,
            fam.summaries(),
            n_sims=n_sims,
            n_draws=n_draws,
            seed=seed,
            problem="poisson1d-gp-prior",
            method=label,
            setting={"n_col": fam.xc.numel(), "tau": fam.tau, "infer_tau": fam.infer_tau},
            recalibrate=50 if quick else 200,
        )
    return rows
