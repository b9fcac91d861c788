"""bayesphys.odil inputs found by a user-side audit (each test failed before its fix)."""

import math

import pytest
import torch

from bayesphys.odil import multifocal_initial_condition


@pytest.mark.parametrize("dtype", [torch.complex64, torch.bool])
def test_multifocal_initial_condition_names_complex_or_bool_foci(dtype):
    # failed inside torch.arange: '"arange_cpu" not implemented for ...'
    with pytest.raises(TypeError, match=r"^foci: expected real coordinates \(mm\)"):
        multifocal_initial_condition((4, 4), torch.ones(1, 2, dtype=dtype), 1.0)


def test_multifocal_initial_condition_refuses_nan_foci_given_as_numbers():
    # a NaN focus in a list gave a NaN initial state without a word
    with pytest.raises(ValueError, match=r"^foci: expected finite values"):
        multifocal_initial_condition((4, 4), [[math.nan, 1.0]], 1.0)
