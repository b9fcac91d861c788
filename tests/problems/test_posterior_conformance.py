"""The posterior conformance suite (tests/posterior_conformance.py) on
ConjugateGaussianField's exact posterior."""

from __future__ import annotations

from bayesphys.problems.linear_gaussian import ConjugateGaussianField, linear_gaussian_problem
from tests.posterior_conformance import PosteriorConformance


class TestConjugateGaussianFieldPosterior(PosteriorConformance):
    def make_posterior(self):
        p = linear_gaussian_problem(seed=0)
        return ConjugateGaussianField(
            p["x"], p["idx"], p["y"], noise=0.1, lengthscale=0.5
        ).posterior()
