"""A posterior's interval reads its level as a number: a level that requires grad is warned
about (its gradient was dropped without a word), a plain one is not."""

from __future__ import annotations

import warnings

import pytest
import torch

from bayesphys import GaussianPosterior, SamplePosterior


def _posteriors():
    mean = torch.zeros(3, dtype=torch.float64)
    yield GaussianPosterior(mean, torch.eye(3, dtype=torch.float64))
    yield SamplePosterior(
        torch.randn(50, 3, generator=torch.Generator().manual_seed(0)), chains=False
    )


@pytest.mark.parametrize("post", list(_posteriors()), ids=["gaussian", "samples"])
def test_a_level_that_requires_grad_is_warned_about(post):
    level = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    with pytest.warns(UserWarning, match=r"level requires grad.*detached"):
        lo, hi = post.interval(level)
    assert not lo.requires_grad and not hi.requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo2, hi2 = post.interval(level.detach())  # a plain 0-d tensor: read silently
        with torch.no_grad():
            post.interval(level)  # no gradient recorded: nothing to drop
    torch.testing.assert_close((lo, hi), (lo2, hi2))
