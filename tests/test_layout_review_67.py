"""Legal but unusual inputs at the shared entry points: numpy arrays with negative strides
(``np.flip``, ``a[::-1]``), read-only arrays on a path that did not copy them, and a 0-d
tensor where a number is expected (each test failed before)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bayesphys import check_int, check_real, plot_bands
from bayesphys._device import as_tensor, values_as_tensor
from bayesphys.metrics import crps_gaussian, gaussian_nll, wasserstein
from bayesphys.problems.linear_gaussian import ConjugateGaussianField, posterior_for

F64 = torch.float64


def _flipped(a: np.ndarray) -> np.ndarray:
    """``a``'s values in a view with negative strides (``np.flip`` of a flipped copy)."""
    out = np.flip(np.flip(a, -1).copy(), -1)
    assert any(s < 0 for s in out.strides)
    return out


def test_arrays_with_negative_strides_are_read_as_their_values():
    # torch.as_tensor refuses negative strides: as_tensor said the float64 array had "a dtype
    # torch has no dtype for", values_as_tensor raised torch's own ValueError
    a = np.linspace(0.0, 1.0, 7)
    fl = _flipped(a)
    assert torch.equal(as_tensor("x", fl), torch.as_tensor(a))
    assert torch.equal(values_as_tensor(fl), torch.as_tensor(a))
    m2 = np.arange(12.0).reshape(3, 4)
    assert torch.equal(as_tensor("x", m2[::-1, ::-2]), torch.as_tensor(m2[::-1, ::-2].copy()))


def test_a_flipped_point_cloud_is_a_point_cloud():
    # wasserstein said "expected a point cloud [n, d] of real numbers" of a float64 [n, 2]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 2)), rng.normal(size=(10, 2))
    assert float(wasserstein(_flipped(x), y)) == float(wasserstein(x, y))


def test_metric_variances_and_sds_as_flipped_or_read_only_arrays():
    mean, truth = torch.zeros(5, dtype=F64), torch.linspace(-1, 1, 5, dtype=F64)
    var = np.linspace(0.5, 1.5, 5)
    ref_nll = gaussian_nll(mean, torch.as_tensor(var), truth)
    ref_crps = crps_gaussian(mean, torch.as_tensor(np.sqrt(var)), truth)
    # a flipped array failed inside torch ("At least one stride ... is negative")
    assert torch.equal(gaussian_nll(mean, _flipped(var), truth), ref_nll)
    assert torch.equal(crps_gaussian(mean, _flipped(np.sqrt(var)), truth), ref_crps)
    # a read-only one (a memmap opened with mode "r") warned that writing to the tensor "will
    # result in undefined behavior"
    ro = var.copy()
    ro.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(gaussian_nll(mean, ro, truth), ref_nll)
    assert np.array_equal(ro, var)


def test_flipped_coordinates_and_data_of_the_conjugate_field_and_plot():
    x = np.linspace(0.0, 1.0, 10)
    y = np.array([0.2, 0.3])
    ref = ConjugateGaussianField(torch.as_tensor(x), [1, 5], torch.as_tensor(y), seed=0)
    m = ConjugateGaussianField(_flipped(x), [1, 5], _flipped(y), seed=0)
    assert torch.equal(m.posterior().mean, ref.posterior().mean)
    post = posterior_for(torch.as_tensor(x), torch.tensor([1, 5]), torch.as_tensor(y), noise=0.1)
    ax = plot_bands(post, _flipped(x), truth=_flipped(x))
    try:
        assert np.array_equal(ax.lines[0].get_xdata(), x)
    finally:
        import matplotlib.pyplot as plt

        plt.close(ax.figure)


@pytest.mark.parametrize(
    "check, value, convert",
    [
        (check_real, torch.tensor(0.5), "float"),
        (check_real, np.array(0.5), "float"),
        (check_int, torch.tensor(3), "int"),
    ],
)
def test_a_zero_dim_tensor_for_a_number_names_the_conversion(check, value, convert):
    # "lr: expected a real number, received Tensor" said nothing of what to pass
    with pytest.raises(TypeError, match=rf"^lr: expected .*: pass {convert}\(x\)\)$"):
        check("lr", value)
    with pytest.raises(TypeError) as info:  # a tensor of several values gets no such hint
        check("lr", torch.ones(2))
    assert "pass" not in str(info.value)
