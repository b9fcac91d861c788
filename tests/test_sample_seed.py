"""Posterior.sample takes seed= (every model's posterior does) as well as a generator."""

from __future__ import annotations

import pytest
import torch

from bayesphys import GaussianPosterior, SamplePosterior


def _posteriors():
    g = GaussianPosterior(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    s = SamplePosterior(torch.randn(1, 20, 3, generator=torch.Generator().manual_seed(0)))
    return [g, s]


@pytest.mark.parametrize("post", _posteriors(), ids=["gaussian", "samples"])
def test_seed_reproduces_and_equals_a_seeded_generator(post):
    a = post.sample((4,), seed=5)
    assert torch.equal(a, post.sample((4,), seed=5))
    assert torch.equal(a, post.sample((4,), torch.Generator().manual_seed(5)))
    assert not torch.equal(a, post.sample((4,), seed=6))
    with pytest.raises(ValueError, match="not both"):
        post.sample((4,), torch.Generator(), seed=5)
    with pytest.raises(TypeError, match="for a seed, pass seed="):
        post.sample((4,), 5)


def test_recalibrated_posterior_passes_the_seed_on():
    from bayesphys.diagnostics import RecalibratedPosterior, Recalibrator

    base = _posteriors()[0]
    rec = RecalibratedPosterior(base, Recalibrator("zscore", scale=2.0))
    assert torch.equal(rec.sample((3,), seed=1), 2.0 * base.sample((3,), seed=1))
