"""The posterior conformance suite (tests/posterior_conformance.py) on the ODIL posteriors:
the glioma model's tumour-map posterior (forward solves of Laplace draws) and the Laplace
field posterior of a discrete problem, dense and sampled (low-rank)."""

from __future__ import annotations

import functools

import torch

from bayesphys.odil import DiscreteProblem, GliomaModel, field_posterior, minimize
from bayesphys.problems.glioma import brain_phantom, synthetic_patient
from tests.posterior_conformance import PosteriorConformance

F64 = torch.float64


class TestGliomaPosterior(PosteriorConformance):
    has_log_prob = False
    has_rsample = False
    resamples_stored_draws = True

    def make_posterior(self):
        m = GliomaModel.from_patient(synthetic_patient(0, phantom=brain_phantom(16, 8.0)))
        res = m.fit(progress=False)
        assert res.converged, res.message
        return m.posterior(num_samples=6)


@functools.cache
def _problem():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(30, 20, generator=gen, dtype=F64)
    y = torch.randn(30, generator=gen, dtype=F64)

    def residuals(f, p):
        u = f["u"]
        return {"data": a @ u + p["k"] - y, "smooth": 0.3 * (u[1:] - u[:-1]), "k": p["k"] - 1}

    prob = DiscreteProblem({"u": (20,)}, {"k": 1.0}, residuals, dtype=F64)
    x, _ = minimize(prob, method="lbfgs", steps=30)
    return prob, x


class TestODILFieldPosteriorDense(PosteriorConformance):
    def make_posterior(self):
        prob, x = _problem()
        return field_posterior(prob, x, "u")


class TestODILFieldPosteriorSampled(PosteriorConformance):
    def make_posterior(self):
        prob, x = _problem()
        return field_posterior(prob, x, "u", dense_max=0)
