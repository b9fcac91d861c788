"""Numpy arrays with negative strides (``np.flip``) or read-only ones (a memmap opened with
mode "r"): a source population's refusal hinted ``torch.as_tensor(x)``, which failed for the
first ("At least one stride in the given numpy array is negative") and warned at the second
(it now names a copy); treatment indices given so were refused as "expected integer indices"
(each test failed before)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching
from bayesphys.problems.populations import linear_map, patient_screen
from tests.tiny_models import TINY_MFM


def _flipped(a: np.ndarray) -> np.ndarray:
    out = np.flip(np.flip(a, 0).copy(), 0)
    assert out.strides[0] < 0
    return out


def _read_only(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out.flags.writeable = False
    return out


@pytest.fixture(scope="module")
def model():
    data = linear_map(n_train=4, n_cal=0, n_test=2, n_points=16, seed=0)
    m = MetaFlowMatching(data, seed=0, **TINY_MFM)
    m.fit(steps=1, progress=False)
    return m, data.source[0]


@pytest.mark.parametrize("make", [_flipped, _read_only], ids=["flipped", "read_only"])
def test_the_hint_for_an_odd_array_is_a_conversion_that_works(model, make):
    m, src = model
    x = make(src.numpy())
    with pytest.raises(TypeError) as info:
        m.predict([x])
    assert re.search(
        r"received numpy\.ndarray \(convert it with torch\.as_tensor\(x\.copy\(\)\)\)$",
        str(info.value),
    ), str(info.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = m.predict([torch.as_tensor(x.copy())])
    assert torch.equal(got[0], m.predict([src])[0])


@pytest.mark.parametrize("make", [_flipped, _read_only], ids=["flipped", "read_only"])
def test_treatment_indices_as_an_odd_array_are_read_as_their_values(make):
    data = patient_screen(n_patients=4, n_treatments=2, n_replicates=2, n_cells=24, dim=3)
    m = MetaFlowMatching(data, seed=0, **TINY_MFM)
    m.fit(steps=1, progress=False)
    src, feats = data.source[:2], data.source_features[:2]
    tr = make(np.array([1, 0]))
    ref = m.predict(src, [1, 0], features=feats)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = m.predict(src, tr, features=feats)
        post = m.posterior(src, tr, num_samples=2, features=feats)
    assert all(torch.equal(a, b) for a, b in zip(got, ref, strict=True))
    ref_post = m.posterior(src, [1, 0], num_samples=2, features=feats)
    assert torch.equal(post.draws, ref_post.draws)
    assert np.array_equal(tr, [1, 0])
