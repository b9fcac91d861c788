"""RandomGridNP inside a caller's ``torch.autocast("cpu", dtype=torch.bfloat16)`` block trains
and predicts in the model's dtype: its fit failed with "feat: expected x's dtype
torch.float32, received torch.bfloat16" (an argument the caller never passed), and its
posterior's mean came back 1e-2 off, still labelled float32."""

from __future__ import annotations

import pytest
import torch

from bayesphys.problems.rgnp import sample_prior
from tests.tiny_models import tiny_rgnp


def _run(fit: bool):
    m = tiny_rgnp()
    losses = m.fit(steps=2, progress=False).loss_history if fit else []
    z, w = sample_prior(m.problem, 3, generator=torch.Generator().manual_seed(0))
    post = m.posterior(torch.linspace(-1, 1, 9), z=z, w=w)
    return torch.as_tensor(losses), post.mean, post.variance, post.sample((2,), seed=0)


@pytest.mark.filterwarnings("ignore:RandomGridNP.posterior. the model has not been trained")
def test_posterior_under_autocast_matches_the_one_outside():
    want = _run(fit=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _run(fit=False)
    for g, w in zip(got[1:], want[1:], strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w)


def test_fit_under_autocast_trains_as_outside():
    want = _run(fit=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _run(fit=True)
        assert torch.is_autocast_enabled("cpu")  # the caller's block is left as it was
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
