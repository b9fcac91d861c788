"""A ProbConserv update's result is its own: a later in-place edit of a tensor the caller gave
it does not reach it (review of aliasing; each test failed before its mend)."""

from __future__ import annotations

import pytest
import torch
from linear_operator.operators import DiagLinearOperator

from bayesphys import GaussianPosterior
from bayesphys.probconserv import conservation_update, fit_hybrid, trapezoid_weights

from .test_calibration import error_direction_set

F64 = torch.float64


@pytest.mark.parametrize("sigma_g", [0.0, 0.1])
def test_updated_draws_do_not_follow_later_edits_of_g(sigma_g):
    """conservation_update's sampler held the caller's G: an in-place edit of G after the
    update (a buffer reused for the next slice) changed the posterior's draws while its mean
    and variance stayed those of the G given."""
    n = 7
    g = torch.Generator().manual_seed(0)
    prior = GaussianPosterior(
        torch.randn(n, generator=g, dtype=F64),
        DiagLinearOperator(torch.rand(n, generator=g, dtype=F64) + 0.1),
    )
    G = trapezoid_weights(torch.linspace(0.0, 1.0, n, dtype=F64))[None].clone()
    post = conservation_update(prior, G, torch.tensor([0.5], dtype=F64), sigma_g)
    before = post.sample((3,), seed=0)
    G.mul_(2.0)
    torch.testing.assert_close(post.sample((3,), seed=0), before, rtol=0, atol=0)


def test_a_hybrid_calibration_keeps_copies_of_its_grid_and_means():
    """fit_hybrid kept the caller's float64 x (and, with analogs, the validation means): an
    in-place edit of them after the fit changed the grid that matches() compares against and
    the means the analogs are found among."""
    mean, cov, truth, update, t, x = error_direction_set()
    x0, mean0 = x.clone(), mean.clone()
    cal = fit_hybrid(mean, cov, truth, update, t, x, neighbours=(2,))
    assert cal.neighbours == 2
    x.add_(1.0)
    mean.add_(1.0)
    assert cal.matches(t, x0) and not cal.matches(t, x)
    assert torch.equal(cal.val_mean, mean0)
