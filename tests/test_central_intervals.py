"""Intervals at many levels from one quantile call: the same numbers as one call per level."""

from __future__ import annotations

import pytest
import torch

from bayesphys import GaussianPosterior, SamplePosterior
from bayesphys._posterior_base import central_intervals, is_posterior
from bayesphys.diagnostics import RecalibratedPosterior, Recalibrator

LEVELS = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]


def _posteriors():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    gauss = GaussianPosterior(
        torch.randn(6, generator=g, dtype=torch.float64), a @ a.T + torch.eye(6)
    )
    draws = SamplePosterior(torch.randn(2, 50, 6, generator=g))
    recal = RecalibratedPosterior(gauss, Recalibrator("zscore", scale=1.7))
    return {"gaussian": gauss, "samples": draws, "recalibrated": recal}


@pytest.mark.parametrize("name", ["gaussian", "samples", "recalibrated"])
def test_batched_intervals_equal_one_call_per_level(name):
    post = _posteriors()[name]
    got = central_intervals(post, LEVELS)
    for (lo, hi), lv in zip(got, LEVELS):
        want_lo, want_hi = post.interval(lv)
        assert torch.equal(lo, want_lo) and torch.equal(hi, want_hi)


def test_an_overridden_interval_is_called_per_level():
    calls = []

    class Shifted(GaussianPosterior):
        def interval(self, level=0.95):
            calls.append(level)
            lo, hi = super().interval(level)
            return lo + 1, hi + 1

    base = _posteriors()["gaussian"]
    post = Shifted(base.mean, base.covariance)
    got = central_intervals(post, [0.5, 0.9])
    assert calls == [0.5, 0.9]
    assert torch.equal(got[1][0], base.interval(0.9)[0] + 1)


def test_levels_are_still_checked():
    post = _posteriors()["gaussian"]
    with pytest.raises(ValueError, match="level"):
        central_intervals(post, [0.5, 1.5])


def test_is_posterior():
    for post in _posteriors().values():
        assert is_posterior(post)
    assert not is_posterior(torch.zeros(3)) and not is_posterior(object())


def test_is_posterior_reads_no_property_and_asks_a_proxy():
    """One answer on every Python: members are found without running properties (3.11's
    isinstance ran them, so a failing ``variance`` escaped as its own error), and a proxy
    that delegates through ``__getattr__`` is asked (3.12's isinstance no longer sees its
    members, so RecalibratedPosterior refused a wrapped posterior there)."""
    base = _posteriors()["gaussian"]

    class Costly:  # a user's posterior class (not one of the package's)
        event_shape, batch_shape, device, dtype = base.event_shape, base.batch_shape, "cpu", None
        mean = base.mean
        sample = rsample = quantile = interval = log_prob = to = to_inference_data = print

        @property
        def variance(self):
            raise RuntimeError("computed")

    assert is_posterior(Costly())

    class Proxy:
        def __getattr__(self, name):
            return getattr(base, name)

    class HalfProxy:
        def __getattr__(self, name):
            if name in ("sample", "rsample"):
                raise AttributeError(name)
            return getattr(base, name)

    assert is_posterior(Proxy()) and not is_posterior(HalfProxy())
    assert RecalibratedPosterior(Proxy(), Recalibrator("zscore", scale=2.0)).mean.shape == (
        base.mean.shape
    )


def test_a_delegating_wrapper_takes_the_loop():
    base = _posteriors()["gaussian"]

    class Wrapped:
        def __getattr__(self, name):
            return getattr(base, name)

    got = central_intervals(Wrapped(), [0.5, 0.9])
    assert torch.equal(got[1][0], base.interval(0.9)[0])


def test_recalibrated_sample_over_a_base_without_seed():
    base = _posteriors()["gaussian"]

    class OldStyle:  # a user posterior with the older sample(shape, generator) signature
        def __getattr__(self, name):
            return getattr(base, name)

        def sample(self, sample_shape=(), generator=None):
            return base.sample(sample_shape, generator)

    rec = RecalibratedPosterior(OldStyle(), Recalibrator("zscore", scale=2.0))
    assert rec.sample((3,)).shape == (3, 6)
    assert torch.equal(rec.sample((3,), seed=4), rec.sample((3,), seed=4))
