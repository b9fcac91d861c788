"""Features in very different units are warned about: the model standardises with one scale
for every dimension (as the reference code), which squashes the small-spread ones."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from bayesphys.meta_fm import MetaFlowMatching
from bayesphys.problems.populations import linear_map
from tests.tiny_models import TINY_MFM


def _data(scale):
    d = linear_map(n_train=6, n_cal=0, n_test=2, n_points=32, seed=0)
    a = torch.tensor(scale, dtype=d.source[0].dtype)
    return dataclasses.replace(
        d, source=[s * a for s in d.source], target=[t * a for t in d.target]
    )


def test_unequal_spreads_are_warned_about():
    m = MetaFlowMatching(_data([1.0, 1e3]), seed=0, **TINY_MFM)
    with pytest.warns(
        UserWarning, match=r"spreads differ by [0-9.e+]+x .* in dimension 1, .* dimension 0"
    ):
        m.fit(steps=1, progress=False)


# a constant dimension (sd 0) is no spread ratio; nor are points that are all the same
@pytest.mark.parametrize("scale", [[1.0, 1.0], [1e3, 1e3], [1.0, 30.0], [1.0, 0.0], [0.0, 0.0]])
def test_one_unit_for_all_dimensions_is_silent(scale):
    m = MetaFlowMatching(_data(scale), seed=0, **TINY_MFM)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.fit(steps=1, progress=False)
