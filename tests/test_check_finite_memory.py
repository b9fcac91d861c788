"""``check_finite`` (run on every posterior's draws and means and on every metric's input)
decides from reductions that allocate nothing of its input's size; the mask is formed only to
count bad entries."""

from __future__ import annotations

import pytest
import torch

from bayesphys._device import check_finite

from .memory_checks import linux_only, peak_rise_mb


@linux_only
def test_check_finite_of_a_large_tensor_allocates_no_copy_of_it():
    # the isfinite mask and its temporaries: 1.7x the tensor (135 MB here)
    assert peak_rise_mb('check_finite("x", x)') < 20


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_finite_still_finds_one_bad_entry(dtype, bad):
    x = torch.zeros(7, 9, dtype=dtype)
    x[3, 5] = bad
    with pytest.raises(ValueError, match=r"x: expected finite values, received 1 NaN/Inf"):
        check_finite("x", x)
    with pytest.raises(ValueError, match="received 1 NaN/Inf"):
        check_finite("x", x.mT[1::2])  # a strided view holding it (column 5)


def test_check_finite_other_layouts_and_values():
    check_finite("x", torch.zeros(0, 3))
    check_finite("x", torch.ones(3, requires_grad=True))
    # huge values of both signs: their sum is NaN (inf - inf), the values are finite
    check_finite("x", torch.tensor([3e38, 3e38, -3e38, -3e38]))
    check_finite("x", torch.ones(2, 2, dtype=torch.complex64))
    z = torch.ones(4, dtype=torch.complex128)
    z[2] = complex(1.0, float("nan"))
    with pytest.raises(ValueError, match="received 1 NaN/Inf"):
        check_finite("z", z)
    check_finite("i", torch.arange(5))  # integers: nothing to check
