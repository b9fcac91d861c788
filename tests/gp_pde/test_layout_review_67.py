"""Grid coordinates given as a read-only numpy array (a memmap opened with mode "r", np.load
with mmap_mode="r") or one with negative strides (``np.flip``, ``a[::-1]``): the constructor,
predict and posterior read them as their values (each test failed before: a flipped axis was
"expected real coordinates ... At least one stride in the given numpy array is negative", a
read-only one warned that writing to the tensor "will result in undefined behavior")."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bayesphys.gp_pde import GPPDESolver

X = np.linspace(0.0, 1.0, 16)


def _read_only() -> np.ndarray:
    a = X.copy()
    a.flags.writeable = False
    return a


def _flipped() -> np.ndarray:
    a = np.flip(np.flip(X).copy())
    assert a.strides[0] < 0
    return a


def _solver(x) -> GPPDESolver:
    return GPPDESolver(
        x=x, source=lambda t: -torch.sin(3 * t), boundary=lambda t: 0 * t, num_mixtures=2
    )


@pytest.mark.parametrize("make", [_read_only, _flipped], ids=["read_only", "flipped"])
def test_odd_numpy_coordinates_are_read_as_their_values(make):
    ref = _solver(X)
    x = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = _solver(x)
        assert all(torch.equal(a, b) for a, b in zip(m.axes, ref.axes, strict=True))
        assert torch.equal(m.f, ref.f)
        assert torch.equal(ref.predict(x), ref.predict(X))
        assert torch.equal(ref.posterior(x).variance, ref.posterior(X).variance)
    assert np.array_equal(x, X)
