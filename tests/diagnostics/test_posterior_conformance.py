"""The posterior conformance suite (tests/posterior_conformance.py) on RecalibratedPosterior:
a variance scaling of a Gaussian base and a quantile map of an empirical base."""

from __future__ import annotations

import torch

from bayesphys import GaussianPosterior, SamplePosterior
from bayesphys.diagnostics import Recalibrator
from tests.posterior_conformance import PosteriorConformance

F64 = torch.float64


class TestRecalibratedVarianceScaling(PosteriorConformance):
    def make_posterior(self):
        mean = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]], dtype=F64)
        cov = torch.tensor([[1.0, 0.3, 0.0], [0.3, 2.0, 0.1], [0.0, 0.1, 0.5]], dtype=F64)
        base = GaussianPosterior(mean, cov.expand(2, 3, 3), event_shape=(3,))
        return Recalibrator("zscore", scale=1.7).wrap(base)


class TestRecalibratedQuantileMap(PosteriorConformance):
    has_log_prob = False
    has_rsample = False
    # moments integrated over a 400-point grid of the map, draws mapped through the base's
    # quantile table: close enough for the moment check without extra slack

    def make_posterior(self):
        draws = torch.randn(1, 200, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
        pits = torch.linspace(0.02, 0.98, 49, dtype=F64) ** 1.3  # a non-trivial map
        return Recalibrator("quantile", pits=pits).wrap(SamplePosterior(draws))
