"""Generator mends from the problems review of 2026-12-02 (each failed on the code before)."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.problems.glioma import brain_phantom, synthetic_patient
from bayesphys.problems.gp_pde import get_problem as gp_pde_problem
from bayesphys.problems.gpme import Diffusion, PorousMedium, Stefan, mass_from_fluxes
from bayesphys.problems.linear_gaussian import (
    ConjugateGaussianField,
    linear_gaussian_problem,
    posterior_for,
)


@pytest.mark.parametrize(
    ("problem", "param"),
    [
        (PorousMedium(t_range=(-0.5, 1.0), x_range=(-1.0, 1.0)), 2.0),
        (Diffusion(t_range=(-0.5, 1.0), x_range=(0.3, 2.0)), 2.0),
        (Stefan(t_range=(-0.2, 0.1)), 0.6),
    ],
)
def test_mass_from_fluxes_integrates_from_a_negative_start_time(problem, param):
    # the flux over [t0, 0) was dropped: 1.12 for a mass of 1.73 (PME), 2.86 for 0.50
    got = mass_from_fluxes(problem, 0.05, param)
    assert got == pytest.approx(float(problem.mass(0.05, param)), rel=1e-6, abs=1e-12)


def test_mass_from_fluxes_at_the_start_time_is_the_start_mass():
    # the Stefan inflow at s = 0 is inf * 0: NaN
    assert mass_from_fluxes("stefan", 0.0, 0.6) == 0.0
    pme = PorousMedium()
    assert mass_from_fluxes(pme, pme.t_range[0], 3.0) == float(pme.mass(pme.t_range[0], 3.0))


def test_a_given_phantom_is_simulated_in_the_asked_dtype():
    ph = brain_phantom(32, 4.0)  # float64 maps
    p = synthetic_patient(3, phantom=ph, dtype=torch.float32)
    for key in ("c_true", "c_future", "pet"):
        assert p[key].dtype == torch.float32, key
    assert ph["wm"].dtype == torch.float64  # the caller's phantom is not changed


def test_a_non_numeric_focus_is_named():
    with pytest.raises(ValueError, match="focus: expected 2 coordinates"):
        synthetic_patient(3, n=32, spacing=4.0, focus=("a", "b"))


@pytest.mark.parametrize(("dtype", "error"), [(torch.int64, ValueError), ("float17", ValueError)])
def test_conjugate_field_refuses_a_non_floating_dtype(dtype, error):
    q = linear_gaussian_problem(seed=0)
    with pytest.raises(error, match="dtype"):
        ConjugateGaussianField(q["x"], q["idx"], q["y"], noise=0.1, dtype=dtype)


def test_conjugate_field_takes_a_dtype_name():
    q = linear_gaussian_problem(seed=0)
    m = ConjugateGaussianField(q["x"], q["idx"], q["y"], noise=0.1, dtype="float32")
    assert m.x.dtype == torch.float32


def test_conjugate_field_refuses_fractional_sensor_indices():
    q = linear_gaussian_problem(seed=0)
    with pytest.raises(ValueError, match="idx: expected whole-number"):
        ConjugateGaussianField(q["x"], q["idx"].double() + 0.7, q["y"], noise=0.1)
    whole = ConjugateGaussianField(q["x"], q["idx"].double(), q["y"], noise=0.1)
    assert torch.equal(whole.idx, q["idx"])


def test_posterior_for_names_a_bad_noise():
    q = linear_gaussian_problem(seed=0)
    with pytest.raises(ValueError, match="noise"):
        posterior_for(q["x"], q["idx"], q["y"], math.nan)


def test_pde_axes_refuse_an_integer_dtype():
    prob = gp_pde_problem("poisson1d-low")
    with pytest.raises(ValueError, match="dtype"):
        prob.axes(5, dtype=torch.int64)
    assert prob.axes(5, dtype=torch.float32)[0].dtype == torch.float32


def test_stefan_constants_stop_at_the_bisections_fixed_point_bit_for_bit():
    """The bisection stops once it no longer moves: the same bits as all 200 halvings."""
    from bayesphys.problems.gpme import stefan_constants

    us = torch.cat(
        [torch.linspace(1e-6, 1 - 1e-6, 999, dtype=torch.float64), torch.tensor([1e-12, 0.6])]
    )
    rhs = (1 - us) / math.sqrt(math.pi)
    lo, hi = torch.full_like(us, 1e-8), torch.full_like(us, 30.0)
    for _ in range(200):  # the reference: every halving
        mid = 0.5 * (lo + hi)
        f = us * torch.erf(mid) * mid * torch.exp(mid * mid) - rhs
        lo, hi = torch.where(f < 0, mid, lo), torch.where(f < 0, hi, mid)
    z1 = 0.5 * (lo + hi)
    alpha, c1 = stefan_constants(us)
    assert torch.equal(alpha, 2 * z1) and torch.equal(c1, (1 - us) / torch.erf(z1))


def test_the_stefan_solution_solves_its_constants_once_per_parameter():
    stefan = Stefan()
    t = torch.linspace(0.0, 0.1, 7, dtype=torch.float64)[:, None]
    x = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    params = torch.tensor([0.55, 0.6], dtype=torch.float64)[:, None, None]
    u = stefan.solution(t, x, params)
    for i, p in enumerate(params.reshape(-1)):
        assert torch.equal(u[i], stefan.solution(t, x, float(p)))
