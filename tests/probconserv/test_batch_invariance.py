"""A function's ProbConserv posterior does not depend on the other functions predicted with it:
the ANP's latent draws of each function come from a stream of its own (seeded by ``seed`` and
its context values), so its Step-1 and updated posteriors are those it gets alone, whichever
functions share the call and in whichever order. One ``[S, B, H]`` block of latent noise from
one stream gave a function other draws beside other functions (moments about 1 % apart).
Tolerances: float32 round-off of the network (``rtol=1e-5``) on float64 moments."""

from __future__ import annotations

import pytest
import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme import make_dataset


@pytest.fixture(scope="module")
def anp():
    torch.set_num_threads(1)
    m = ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=0)
    m.fit(steps=3, progress=False)
    return m


@pytest.mark.parametrize("method", ["none", "probconserv"])
def test_a_function_has_its_posterior_alone_beside_others_and_in_any_order(anp, method):
    ctx = make_dataset("diffusion", params=[1.0, 2.0, 3.0], seed=1)
    t = torch.tensor([0.25, 0.5], dtype=torch.float64)
    full = anp.posterior(ctx, t=t, method=method, seed=3)
    shuffled = anp.posterior(ctx.subset([2, 0, 1]), t=t, method=method, seed=3)
    for i, j in ((0, 1), (1, 2), (2, 0)):  # shuffled[j] is function i
        alone = anp.posterior(ctx.subset([i]), t=t, method=method, seed=3)
        for got in (full.mean[i], shuffled.mean[j]):
            torch.testing.assert_close(got, alone.mean[0], rtol=1e-5, atol=1e-7)
        for got in (full.variance[i], shuffled.variance[j]):
            torch.testing.assert_close(got, alone.variance[0], rtol=1e-5, atol=1e-9)
    # the functions differ, and so do their posteriors (no shared result)
    assert not torch.allclose(full.mean[0], full.mean[1])
    # another seed gives other latent draws
    other = anp.posterior(ctx.subset([0]), t=t, method=method, seed=4)
    assert not torch.allclose(other.variance, full.variance[:1])
