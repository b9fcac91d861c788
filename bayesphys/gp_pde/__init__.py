r"""Kronecker spectral-mixture GP solver for high-frequency and multi-scale PDEs (GP-HM).

Reproduces and extends Fang, Cooley, Long, Li, Kirby, Zhe, "Solving High Frequency and
Multi-Scale PDEs with Gaussian Processes", ICLR 2024 (arXiv:2311.04465):

* :class:`SpectralMixture1d` -- Gaussian-mixture and Student-t (Matern-5/2 x cosine) spectral
  mixture kernels with log-domain (Jeffreys) weights and closed-form derivatives;
  products across dimensions give Kronecker-structured Gram matrices on grids;
* :class:`GPPDESolver` -- collocation on a tensor grid, :math:`U` eliminated by an exact
  structured (Kronecker + Woodbury) solve (complex eigenbasis for first-order operators such as
  advection; for Allen-Cahn a Picard-Kronecker fixed point, :class:`PicardKronSolve`, or
  matrix-free Gauss-Newton with Kronecker-preconditioned CG, :class:`GaussNewtonKronSolve`),
  hyperparameters by Adam, Gaussian posterior of the solution on any test grid;
* :func:`build_factors` / :func:`with_eigen` -- the per-dimension grid factors (:class:`Factor`)
  that :class:`KronSolve`, :class:`DenseSolve`, :class:`PicardKronSolve`,
  :class:`GaussNewtonKronSolve` and :func:`objective` take, for using the solves directly;
* problems with exact solutions in :mod:`bayesphys.problems.gp_pde`.

Example
-------
>>> from bayesphys.gp_pde import GPPDESolver
>>> m = GPPDESolver("poisson1d-low", num_mixtures=4, seed=0)
>>> res = m.fit(steps=20, progress=False)
>>> m.rel_l2() < 1e-2  # 4.9e-3 after 20 steps; 300 steps reach ~1e-8 (see the tests)
True
"""

from .dense_solve import DenseSolve
from .gauss_newton import GaussNewtonKronSolve
from .kernels import KINDS, SpectralMixture1d
from .model import METHODS, NONLINEAR_SOLVERS, GPPDESolver
from .nonlinear import PicardKronSolve
from .operator import Factor, LinearPDEOperator, build_factors, with_eigen
from .solve import KronSolve, objective

__all__ = [
    "SpectralMixture1d",
    "KINDS",
    "GPPDESolver",
    "METHODS",
    "LinearPDEOperator",
    "Factor",
    "build_factors",
    "with_eigen",
    "KronSolve",
    "PicardKronSolve",
    "GaussNewtonKronSolve",
    "NONLINEAR_SOLVERS",
    "DenseSolve",
    "objective",
]
