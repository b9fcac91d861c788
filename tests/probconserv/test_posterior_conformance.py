"""The posterior conformance suite (tests/posterior_conformance.py) on what ProbConserv
returns: its updated posterior for each method (a diagonal and a mixture Step-1
covariance), and the non-negative / monotone sample posteriors projected from it."""

from __future__ import annotations

import functools

import torch

from bayesphys.probconserv import ProbConserv, monotone_posterior, nonnegative_posterior
from bayesphys.problems.gpme import make_dataset
from tests.posterior_conformance import PosteriorConformance

F64 = torch.float64
X = torch.linspace(0, 1, 21, dtype=F64)


@functools.cache
def _model(covariance: str = "lowrank") -> ProbConserv:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = ProbConserv(
            "stefan", step1="anp", hidden=16, n_samples=6, seed=0, covariance=covariance
        )
        m.fit(steps=3, progress=False)
        if covariance == "mixture":
            m.calibrate(n_functions=12, objective="ll")
        return m
    finally:
        torch.set_num_threads(n)


@functools.cache
def _data():
    return make_dataset("stefan", params=[0.6, 0.55], seed=3)


def _posterior(method: str = "probconserv", covariance: str = "lowrank"):
    return _model(covariance).posterior(_data(), x=X, method=method)


class TestProbConservUpdate(PosteriorConformance):
    has_log_prob = False  # documented: drawn through a custom root

    def make_posterior(self):
        return _posterior()


class TestProbConservHardConstraint(PosteriorConformance):
    def make_posterior(self):
        return _posterior("hardc")


class TestProbConservUnconstrained(PosteriorConformance):
    def make_posterior(self):
        return _posterior("none")


class TestProbConservMixture(PosteriorConformance):
    has_log_prob = False  # drawn through the mixture's root, as the update

    def make_posterior(self):
        return _posterior(covariance="mixture")


class TestProbConservNonnegative(PosteriorConformance):
    has_log_prob = False
    has_rsample = False
    resamples_stored_draws = True

    def make_posterior(self):
        m = _model()
        return nonnegative_posterior(_posterior(), X, m.mass(_data()), 60)


class TestProbConservMonotone(PosteriorConformance):
    has_log_prob = False
    has_rsample = False
    resamples_stored_draws = True

    def make_posterior(self):
        m = _model()
        return monotone_posterior(_posterior(), X, m.mass(_data()), 60, nonnegative=True)
