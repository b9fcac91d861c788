"""Problems stated far from order 1 are warned about (the fit's starting values are not
unit-invariant: see bayesphys/gp_pde/_units.py for the measured failures)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from bayesphys.gp_pde import GPPDESolver
from bayesphys.problems.gp_pde import PROBLEMS

F64 = torch.float64


def _solver(L=1.0, A=1.0, lo=0.0):
    def s(x):
        return (x - lo) / L

    def exact(x):
        return A * (torch.sin(2 * math.pi * s(x)) + s(x))

    def source(x):
        return -A * (2 * math.pi / L) ** 2 * torch.sin(2 * math.pi * s(x))

    x = torch.linspace(lo, lo + L, 24, dtype=F64)
    return GPPDESolver(x=x, source=source, boundary=exact, num_mixtures=2, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"L": 0.1}, r"axis 0 spans 0\.1 units"),
        ({"L": 3600.0}, r"axis 0 spans 3\.6e\+03 units"),
        ({"lo": 1e7}, r"axis 0 lies at 10000000\.\.10000001, far from 0"),
    ],
)
def test_axes_far_from_order_one_are_warned_about_at_fit(kwargs, match, tmp_path):
    m = _solver(**kwargs)
    with pytest.warns(UserWarning, match=match):
        m.fit(steps=1, progress=False)
    # not on construction or load (a saved custom-domain model warned at every load)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _solver(**kwargs)


@pytest.mark.parametrize("A", [1e3, 1e-3])
def test_a_fitted_field_far_from_order_one_is_warned_about(A):
    m = _solver(A=A)
    with pytest.warns(UserWarning, match="the fitted field's rms is"):
        m.fit(steps=2, progress=False)


def test_order_one_problems_and_every_registered_problem_stay_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = _solver(L=10.0)
        m.fit(steps=2, progress=False)
        _solver(lo=1e5).fit(steps=1, progress=False)
        for name in PROBLEMS:
            GPPDESolver(name, num_mixtures=2, seed=0)
