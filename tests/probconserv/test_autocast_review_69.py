"""ProbConserv inside a caller's ``torch.autocast("cpu", dtype=torch.bfloat16)`` block trains
and predicts as outside it: the ANP's step-1 ran its products in bfloat16, so the posterior
mean was 3e-2 off without a word (1e-1 after a short fit)."""

from __future__ import annotations

import pytest
import torch

from bayesphys.probconserv import ProbConserv
from bayesphys.problems.gpme import make_dataset


def _run(context):
    m = ProbConserv("diffusion", step1="anp", hidden=16, n_samples=8, seed=0)
    before = m.posterior(context)
    losses = m.fit(steps=1, progress=False).loss_history
    after = m.posterior(context)
    return (
        before.mean,
        before.variance,
        torch.as_tensor(losses),
        after.mean,
        after.sample((2,), seed=0),
        m.mass(context),
    )


@pytest.mark.filterwarnings("ignore:ProbConserv.posterior. the model has not been trained")
def test_fit_and_posterior_under_autocast_match_the_ones_outside():
    context = make_dataset("diffusion", params=[2.0] * 2, seed=1)
    want = _run(context)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _run(context)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w)
