"""MetaFlowMatching's predictions are computed without gradient: sources that require grad are
warned about, once per call (the flow's output came back detached without a word)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching, MFMEnsemble
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
    ens = MFMEnsemble(pairs, members=2, seed=0, **TINY_MFM)
    ens.fit(steps=1, progress=False)
    return m, src[0], ens


def test_predict_warns_for_sources_that_require_grad(model):
    m, src, _ = model
    with pytest.warns(UserWarning, match=r"^MetaFlowMatching\.predict: sources requires grad"):
        (out,) = m.predict([src.clone().requires_grad_()])
    assert not out.requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (plain,) = m.predict([src])
    torch.testing.assert_close(out, plain)


def test_posterior_warns_once(model):
    m, src, _ = model
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        post = m.posterior([src.clone().requires_grad_()], num_samples=2)
    grad_warnings = [w for w in rec if "requires grad" in str(w.message)]
    assert len(grad_warnings) == 1
    assert str(grad_warnings[0].message).startswith("MetaFlowMatching.posterior: x requires grad")
    assert grad_warnings[0].filename == __file__
    assert not post.draws.requires_grad


@pytest.mark.parametrize("method, arg", [("posterior", "x"), ("predict_members", "sources")])
def test_ensemble_warns_once_not_per_member(model, method, arg):
    _, src, ens = model
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        getattr(ens, method)([src.clone().requires_grad_()])
    said = [str(w.message) for w in rec if "requires grad" in str(w.message)]
    assert len(said) == 1 and said[0].startswith(f"MFMEnsemble.{method}: {arg} requires grad")


def test_gaussian_w2_warns_for_inputs_that_require_grad():
    """It is computed on detached float64 CPU copies: a loss on it gave no gradient, unsaid."""
    from bayesphys.meta_fm.evaluation import gaussian_w2

    m = torch.zeros(2, dtype=torch.float64)
    s = torch.eye(2, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"^gaussian_w2: m1 requires grad, but"):
        out = gaussian_w2(m.clone().requires_grad_(), s, m + 1, s)
    assert not out.requires_grad
    torch.testing.assert_close(out, gaussian_w2(m, s, m + 1, s))
