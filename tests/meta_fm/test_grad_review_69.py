"""MetaFlowMatching's predictions are computed without gradient: sources that require grad are
warned about, once per call (the flow's output came back detached without a word)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching
from bayesphys.problems.populations import PopulationPairs
from tests.tiny_models import TINY_MFM


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    src = [torch.as_tensor(rng.normal(size=(16, 2))) for _ in range(3)]
    pairs = PopulationPairs(
        name="shift",
        source=src,
        target=[s + 1.0 for s in src],
        source_id=torch.arange(3),
        splits={"train": [0, 1], "test": [2]},
        paired=False,
    )
    m = MetaFlowMatching(pairs, seed=0, **TINY_MFM)
    m.fit(steps=1, progress=False)
    return m, src[0]


def test_predict_warns_for_sources_that_require_grad(model):
    m, src = model
    with pytest.warns(UserWarning, match=r"^MetaFlowMatching\.predict: sources requires grad"):
        (out,) = m.predict([src.clone().requires_grad_()])
    assert not out.requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (plain,) = m.predict([src])
    torch.testing.assert_close(out, plain)


def test_posterior_warns_once(model):
    m, src = model
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        post = m.posterior([src.clone().requires_grad_()], num_draws=2)
    grad_warnings = [w for w in rec if "requires grad" in str(w.message)]
    assert len(grad_warnings) == 1
    assert str(grad_warnings[0].message).startswith("MetaFlowMatching.posterior: x requires grad")
    assert grad_warnings[0].filename == __file__
    assert not post.draws.requires_grad
