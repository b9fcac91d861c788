"""Wrapping a recalibrated posterior again: the maps compose, and the same map twice (a rerun
notebook cell ``post = rec.wrap(post)``) warns instead of compounding silently."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from bayesphys import GaussianPosterior
from bayesphys.diagnostics import Recalibrator

F64 = torch.float64


def _overconfident() -> tuple[GaussianPosterior, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(30, 5, generator=g, dtype=F64)
    cov = torch.diag_embed(torch.full((30, 5), 0.25, dtype=F64))
    truth = mu + torch.randn(30, 5, generator=g, dtype=F64)  # sd 1 against the posterior's 0.5
    return GaussianPosterior(mu, cov, event_shape=(5,)), truth


@pytest.mark.parametrize("method", ["zscore", "conformal", "quantile"])
def test_the_same_map_wrapped_twice_warns_and_composes(method):
    post, truth = _overconfident()
    rec = Recalibrator.fit([post], [truth], method=method)
    once = rec.wrap(post)
    with pytest.warns(UserWarning, match=r"already recalibrated by this map.*\.base") as got:
        twice = rec.wrap(once)
    assert got[0].filename == __file__  # at the user's line
    # what the docstring says: the map is applied on top of the one in force
    assert float(twice.variance.mean()) > 1.5 * float(once.variance.mean())
    # an equal map (a copy, or a rerun cell's refit on the same held-out pairs) warns too
    for same in (copy.deepcopy(rec), Recalibrator.fit([post], [truth], method=method)):
        with pytest.warns(UserWarning, match="already recalibrated by this map"):
            same.wrap(once)
    # the map under another one is found as well
    other = Recalibrator("zscore", scale=1.3)
    with pytest.warns(UserWarning, match="already recalibrated by this map"):
        rec.wrap(other.wrap(once))


def test_a_different_map_stacks_without_a_warning():
    post, truth = _overconfident()
    rec = Recalibrator.fit([post], [truth])
    once = rec.wrap(post)
    second = Recalibrator.fit([once], [truth])  # fitted on the recalibrated posteriors
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stacked = second.wrap(once)
        rec.wrap(post)  # the unrecalibrated base again: quiet
    assert second.scale == pytest.approx(1.0)
    torch.testing.assert_close(stacked.variance, once.variance)
