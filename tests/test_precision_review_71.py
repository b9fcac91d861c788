"""Silent precision loss in the shared core: numbers given as Python floats or lists (float64
in Python and numpy) were read with ``torch.as_tensor``, which rounds them to float32, so a
float64 user's metric, weights, truths or held-out PITs were computed from float32 values."""

import numpy as np
import pytest
import torch

from bayesphys.metrics import crps_gaussian, wasserstein

F64 = torch.float64


@pytest.mark.parametrize(
    ("mean", "std", "y"),
    [
        (0.1, 0.3, 0.2),  # Python numbers only
        ([0.1, 1.7], [0.3, 0.9], [0.2, 2.4]),  # lists only
        (0, [0.3], [0.2]),  # an integer mean beside lists of floats
    ],
)
def test_crps_gaussian_of_python_floats_is_float64(mean, std, y):
    got = crps_gaussian(mean, std, y)
    ref = crps_gaussian(
        torch.tensor(mean, dtype=F64), torch.tensor(std, dtype=F64), torch.tensor(y, dtype=F64)
    )
    assert got.dtype == F64
    assert torch.equal(got, ref)


def test_wasserstein_list_weights_are_not_rounded():
    pytest.importorskip("ot")
    g = np.random.default_rng(0)
    x = torch.tensor(g.normal(size=(5, 2)))
    y = torch.tensor(g.normal(size=(6, 2)))
    w = g.random(5) + 0.1
    as_list = wasserstein(x, y, weights_x=[float(v) for v in w])
    as_array = wasserstein(x, y, weights_x=w)
    assert torch.equal(as_list, as_array)
