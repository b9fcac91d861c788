"""The conservation update applied to its own result (a rerun cell, a loop), as documented in
``conservation_update``: refused after the exact limit with a message that says why, a no-op
with a finite sigma_g there, and a second observation after a finite sigma_g."""

from __future__ import annotations

import pytest
import torch
from linear_operator import to_linear_operator

from bayesphys.posterior import GaussianPosterior
from bayesphys.probconserv import conservation_update, trapezoid_weights

F64 = torch.float64


def _prior(n: int = 51) -> tuple[GaussianPosterior, torch.Tensor]:
    g = trapezoid_weights(torch.linspace(0, 1, n, dtype=F64))
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, dtype=F64, generator=gen)
    mean = torch.randn(n, dtype=F64, generator=gen)
    return GaussianPosterior(mean, to_linear_operator(a @ a.T / n)), g


def test_a_second_exact_update_is_refused_saying_the_posterior_conserves_already():
    prior, g = _prior()
    once = conservation_update(prior, g, 1.0)
    with pytest.raises(ValueError, match=r"already conditioned exactly on these rows"):
        conservation_update(once, g, 1.0)


@pytest.mark.parametrize("sigma_g", [1e-6, 0.1])
def test_a_finite_update_of_a_conserved_posterior_changes_nothing(sigma_g):
    prior, g = _prior()
    once = conservation_update(prior, g, 1.0)
    again = conservation_update(once, g, 1.0, sigma_g)
    torch.testing.assert_close(again.mean, once.mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        again.covariance.to_dense(), once.covariance.to_dense(), rtol=0, atol=1e-12
    )


def test_two_noisy_updates_are_one_with_the_noise_over_root_two():
    prior, g = _prior()
    twice = conservation_update(conservation_update(prior, g, 1.0, 0.1), g, 1.0, 0.1)
    once = conservation_update(prior, g, 1.0, 0.1 / 2**0.5)
    torch.testing.assert_close(twice.mean, once.mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        twice.covariance.to_dense(), once.covariance.to_dense(), rtol=0, atol=1e-12
    )
