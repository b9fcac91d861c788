"""Property tests of the GPME closed forms: the mass b(t) is the integral of the exact
solution over any interval, and its time derivative is the net boundary inflow."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from bayesphys.problems.gpme import Diffusion, PorousMedium, Stefan, stefan_constants

F64 = torch.float64

# (family, parameter range): the Stefan threshold over most of (0, 1), PME exponents below
# and above 1 (a front with an infinite or a zero slope)
FAMILIES = {
    "diffusion": (Diffusion, (0.1, 5.0)),
    "pme": (PorousMedium, (0.5, 6.0)),
    "stefan": (Stefan, (0.05, 0.95)),
}


def _front(name: str, t: float, param: float) -> list[float]:
    """Where the solution has a kink (a quadrature break point)."""
    if name == "pme":
        return [t]
    if name == "stefan":
        return [float(stefan_constants(param)[0]) * math.sqrt(t)]
    return []


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(FAMILIES)),
    x0=st.floats(0.0, 0.5),
    length=st.floats(0.2, 1.5),
    t=st.floats(0.01, 2.0),
    frac=st.floats(0.0, 1.0),
)
def test_mass_is_the_integral_of_the_solution_and_its_derivative_the_inflow(
    name, x0, length, t, frac
):
    """On any domain [x0, x1] at any time (front inside, not yet in, or already out):
    b(t) = int_{x0}^{x1} u(t, x) dx (adaptive quadrature split at the front), and
    db/dt (autograd through the closed form) = F(x0) - F(x1) = boundary_flux."""
    cls, (lo, hi) = FAMILIES[name]
    param = lo + frac * (hi - lo)
    x1 = x0 + length
    prob = cls(x_range=(x0, x1))
    pts = [p for p in _front(name, t, param) if x0 < p < x1]

    def u(x: float) -> float:
        return float(prob.solution(torch.tensor(t, dtype=F64), torch.tensor(x, dtype=F64), param))

    want, err = quad(u, x0, x1, points=pts or None, epsabs=1e-12, epsrel=1e-12, limit=200)
    assert err < 1e-9
    b = float(prob.mass(t, param))
    assert b == pytest.approx(want, rel=1e-8, abs=1e-9)

    tt = torch.tensor(t, dtype=F64, requires_grad=True)
    (db,) = torch.autograd.grad(prob.mass(tt, param), tt)
    flux = float(prob.boundary_flux(t, param))
    assert float(db) == pytest.approx(flux, rel=1e-7, abs=1e-9)
