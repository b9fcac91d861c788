"""ProbConserv models given what a user may pass: grids in single precision."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme import make_dataset

# the models are untrained (the grid checks do not need trained ones): their posteriors'
# untrained warning is not what these tests check
pytestmark = pytest.mark.filterwarnings("ignore:ProbConserv.posterior. the model has not been")


@pytest.fixture(scope="module")
def tiny():
    """An untrained tiny ANP per problem (the grid checks do not need a trained one)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield {
            name: ProbConserv(name, step1="anp", hidden=8, n_samples=4, seed=0)
            for name in ("diffusion", "stefan")
        }
    finally:
        torch.set_num_threads(n)


def test_a_float32_grid_over_the_domain_is_accepted(tiny):
    m = tiny["diffusion"]
    data = make_dataset("diffusion", params=[1.0], seed=1)
    x32 = torch.linspace(0, 2 * math.pi, 11)  # ends at 6.2831855 > 2 pi in float32
    assert float(x32[-1]) > 2 * math.pi
    # refused as outside the diffusion domain
    post = m.posterior(data, x=x32)
    want = m.posterior(data, x=torch.linspace(0, 2 * math.pi, 11, dtype=torch.float64))
    assert post.mean.shape == (1, 1, 11)
    torch.testing.assert_close(post.mean, want.mean, rtol=0, atol=1e-5)
    assert m.step1(data, x=np.linspace(0, 2 * math.pi, 11, dtype=np.float32)).mean.shape == (
        1,
        1,
        11,
    )


def test_a_float32_time_grid_over_the_range_is_accepted(tiny):
    m = tiny["stefan"]
    data = make_dataset("stefan", params=[0.6], seed=1)
    t32 = torch.linspace(0, 0.1, 3)  # 0.1 in float32 is 0.10000000149
    assert m.posterior(data, t=t32, x=m.problem.grid(11)).mean.shape == (1, 3, 11)
    assert m.mass(data, t32).shape == (1, 3)


def test_points_past_the_domain_by_more_than_rounding_are_still_refused(tiny):
    m = tiny["diffusion"]
    data = make_dataset("diffusion", params=[1.0], seed=1)
    x = torch.linspace(0, 2 * math.pi + 1e-4, 11)
    with pytest.raises(ValueError, match=r"^x: expected values in the diffusion domain"):
        m.posterior(data, x=x)
    with pytest.raises(ValueError, match=r"^t: expected values in the stefan domain"):
        tiny["stefan"].mass(make_dataset("stefan", params=[0.6], seed=1), 0.1 + 1e-9)
