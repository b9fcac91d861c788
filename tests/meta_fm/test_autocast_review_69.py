"""MetaFlowMatching and MFMEnsemble inside a caller's ``torch.autocast("cpu",
dtype=torch.bfloat16)`` block train and predict in the model's dtype: predict failed with
"f: expected f(t, x) to return velocities in x's dtype torch.float32, received
torch.bfloat16" (a function the caller never passed)."""

from __future__ import annotations

import numpy as np
import torch

from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
from bayesphys.problems.populations import PopulationPairs
from tests.tiny_models import TINY_MFM


def _pairs() -> PopulationPairs:
    rng = np.random.default_rng(0)
    src = [torch.as_tensor(rng.normal(size=(24, 2)), dtype=torch.float32) for _ in range(3)]
    return PopulationPairs(
        name="shift",
        source=src,
        target=[s + 1.0 for s in src],
        source_id=torch.arange(3),
        splits={"train": [0, 1], "test": [2]},
        paired=False,
    )


def _run(pairs: PopulationPairs):
    m = MetaFlowMatching(pairs, seed=0, **TINY_MFM)
    losses = m.fit(steps=2, progress=False).loss_history
    ens = MFMEnsemble(pairs, members=2, seed=0, **TINY_MFM)
    ens.fit(steps=1, progress=False)
    src = pairs.source[2]
    return (
        torch.as_tensor(losses),
        torch.cat(list(m.predict([src], seed=0))),
        m.posterior(src, num_samples=3, seed=0).mean,
        ens.posterior(src, num_samples=2, seed=0).mean,
    )


def test_fit_and_predict_under_autocast_match_the_ones_outside():
    pairs = _pairs()
    want = _run(pairs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _run(pairs)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w)
