"""The posterior conformance suite (tests/posterior_conformance.py) on the sample posteriors
of MetaFlowMatching (draws over embedding subsamples) and MFMEnsemble (chains = members)."""

from __future__ import annotations

import functools

from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
from bayesphys.problems.populations import linear_map
from tests.posterior_conformance import PosteriorConformance
from tests.tiny_models import SMALL_MFM as SMALL


@functools.cache
def _data():
    # 48 points per population, more than the 32 the embedding sees: the draws differ
    return linear_map(n_train=10, n_cal=6, n_test=6, n_points=48)


class TestMetaFlowMatchingPosterior(PosteriorConformance):
    has_log_prob = False
    has_rsample = False
    resamples_stored_draws = True

    def make_posterior(self):
        m = MetaFlowMatching(_data(), seed=0, **SMALL)
        m.fit(steps=3, progress=False)
        return m.posterior(_data().subset("test").source[:2])  # the default 8 draws


class TestMFMEnsemblePosterior(PosteriorConformance):
    has_log_prob = False
    has_rsample = False
    resamples_stored_draws = True

    def make_posterior(self):
        ens = MFMEnsemble(_data(), members=4, seed=0, **SMALL)
        ens.fit(steps=3, progress=False)
        return ens.posterior(_data().subset("test").source[:2])  # one draw per member
