"""The posterior conformance suite (tests/posterior_conformance.py) on RandomGridNP's field
posterior and its amortised parameter posterior (low-rank plus diagonal covariances)."""

from __future__ import annotations

import functools

import torch

from tests.posterior_conformance import PosteriorConformance
from tests.tiny_models import tiny_rgnp


@functools.cache
def _model():
    m = tiny_rgnp(dtype=torch.float64)
    m.fit(steps=2, progress=False)
    return m


class TestRandomGridNPPosterior(PosteriorConformance):
    def make_posterior(self):
        return _model().posterior(torch.linspace(-1, 1, 9), z=torch.zeros(5), w=torch.ones(1))


class TestRandomGridNPParameterPosterior(PosteriorConformance):
    def make_posterior(self):
        xi = torch.linspace(-0.9, 0.9, 13)
        return _model().parameter_posterior(xi, torch.sin(xi), torch.ones(1))
