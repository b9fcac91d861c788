"""hdi_bounds holds floor(prob * n) + 1 draws, as its docstring says (ArviZ 0.x and 1.x both:
the window spans floor(prob * n) places of the sorted draws)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bayesphys import build_inference_data
from bayesphys.inference_data import hdi_bounds


@pytest.mark.parametrize("prob", [0.5, 0.55, 0.9, 0.94, 0.3])
def test_hdi_bounds_hold_floor_prob_n_plus_one_draws(prob):
    draws = torch.arange(10.0)[None, :]  # n = 10 evenly spaced draws: every window as wide
    idata = build_inference_data(posterior={"a": draws})
    lo, hi = hdi_bounds(idata, "a", prob)
    held = int(((draws >= float(lo)) & (draws <= float(hi))).sum())
    assert held == math.floor(prob * 10) + 1
    assert held >= prob * 10


def test_the_docstring_example():
    idata = build_inference_data(posterior={"a": torch.arange(10.0)[None, :]})
    assert tuple(map(float, hdi_bounds(idata, "a", 0.5))) == (0.0, 5.0)
    assert "give ``(0, 5)``" in " ".join(hdi_bounds.__doc__.split())
    np.testing.assert_array_equal(hdi_bounds(idata, "a", 1.0), (0.0, 9.0))
