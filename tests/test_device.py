"""Device, dtype and seed resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesphys import as_tensor, check_finite, resolve_device, resolve_dtype, seed_everything


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in ("cpu", "cuda")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("gpu0")
    with pytest.raises(TypeError, match="device"):
        resolve_device(3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_resolve_dtype():
    assert resolve_dtype(None) is torch.float64
    assert resolve_dtype("float32") is torch.float32
    with pytest.raises(ValueError, match="floating"):
        resolve_dtype(torch.int64)
    with pytest.raises(ValueError, match="unknown"):
        resolve_dtype("float7")


def test_seed_everything_reproduces():
    seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(TypeError, match="seed"):
        seed_everything("3")


def test_as_tensor_checks():
    t = as_tensor("y", [1.0, 2.0], dtype=torch.float64, ndim=1)
    assert t.dtype is torch.float64
    with pytest.raises(ValueError, match="y: expected 2 dimensions"):
        as_tensor("y", [1.0], ndim=2)
    with pytest.raises(ValueError, match="y: expected finite"):
        as_tensor("y", [float("inf")])
    with pytest.raises(TypeError, match="y"):
        as_tensor("y", object())
    check_finite("ok", torch.ones(2))
