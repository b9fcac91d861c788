"""The posterior conformance suite (tests/posterior_conformance.py) on GPPDESolver's test-grid
posterior (pathwise draws through a custom root, so no log_prob) and its field posterior
(dense covariance)."""

from __future__ import annotations

import functools

import torch

from bayesphys.gp_pde import GPPDESolver
from tests.posterior_conformance import PosteriorConformance


@functools.cache
def _solver() -> GPPDESolver:
    m = GPPDESolver("poisson1d-low", n_col=20, num_mixtures=2, seed=0)
    m.fit(steps=2, progress=False)
    return m


class TestGPPDESolverPosterior(PosteriorConformance):
    has_log_prob = False  # documented: NotImplementedError (draws from a custom root)

    def make_posterior(self):
        return _solver().posterior(torch.linspace(0, 1, 15, dtype=torch.float64))


class TestGPPDESolverFieldPosterior(PosteriorConformance):
    def make_posterior(self):
        return _solver().field_posterior()
