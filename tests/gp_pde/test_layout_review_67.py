"""Grid coordinates given as a read-only numpy array (a memmap opened with mode "r", np.load
with mmap_mode="r") or one with negative strides (``np.flip``, ``a[::-1]``): the constructor,
predict and posterior read them as their values (a flipped axis was "expected real coordinates
... At least one stride in the given numpy array is negative", a read-only one warned that
writing to the tensor "will result in undefined behavior"). Coordinates and a source of a
tensor subclass (``class T(torch.Tensor)``): the subclass reached the kernels and the model's
state, and ``save`` refused them after the fit. Each test failed before."""

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


class _Sub(torch.Tensor):
    """A user's tensor subclass that adds nothing."""


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


def test_a_tensor_subclass_grid_and_source_are_kept_as_plain_tensors(tmp_path):
    x = torch.as_tensor(X).as_subclass(_Sub)
    source = (-torch.sin(3 * torch.as_tensor(X))).as_subclass(_Sub)
    m = GPPDESolver(x=x, source=source, boundary=lambda t: 0 * t, num_mixtures=2)
    assert type(m.f) is torch.Tensor and all(type(a) is torch.Tensor for a in m.axes)
    m.fit(steps=1, progress=False)
    path = m.save(tmp_path / "m.pt")  # refused: "state['kernels']['0.mu'] is of type _Sub"
    back = GPPDESolver.load(path)
    assert torch.equal(back.posterior().mean, m.posterior().mean)
    assert type(x) is _Sub and type(source) is _Sub  # the caller's tensors are left as they are
