"""GPME closed forms at the edges: the Stefan flux before and at the start, NaN times, and the
documented sharing of the design stream between datasets made with one seed."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.problems.gpme import (
    Diffusion,
    PorousMedium,
    Stefan,
    make_dataset,
    stefan_constants,
    stefan_front,
)

F64 = torch.float64


def test_stefan_boundary_flux_is_zero_before_the_start():
    s = Stefan()
    out = s.boundary_flux(torch.tensor([-1.0, -1e-3, -1e-300], dtype=F64), 0.5)
    assert torch.equal(out, torch.zeros(3, dtype=F64))  # was about 4.5e149


def test_stefan_boundary_flux_at_the_start_is_the_limit():
    s = Stefan()
    # inflow c1 / sqrt(pi t) through x = 0 diverges as t -> 0+: +inf exactly at t = 0
    assert s.boundary_flux(torch.tensor(0.0, dtype=F64), 0.6).item() == math.inf
    # through boundaries away from x = 0 the flux tends to 0
    assert Stefan(x_range=(0.1, 1.0)).boundary_flux(torch.tensor(0.0), 0.6).item() == 0.0
    # and for t > 0 the values are the closed form c1 / sqrt(pi t) (front inside the domain)
    _, c1 = stefan_constants(0.6)
    t = torch.tensor([1e-8, 1e-3, 0.05], dtype=F64)
    torch.testing.assert_close(
        s.boundary_flux(t, 0.6), c1 / (math.pi * t).sqrt(), rtol=1e-14, atol=0
    )


@pytest.mark.parametrize(
    "prob, param", [(Stefan(), 0.6), (PorousMedium(), 3.0), (Diffusion(), 2.0)]
)
def test_mass_and_flux_propagate_a_nan_time(prob, param):
    t = torch.tensor([float("nan"), 0.05], dtype=F64)
    for fn in (prob.mass, prob.boundary_flux):
        out = fn(t, param)
        assert torch.isnan(out[0]), fn.__name__  # was 0 (solution gives NaN)
        assert torch.isfinite(out[1]), fn.__name__
    assert torch.isnan(prob.mass(torch.tensor(float("nan")), param))
    assert torch.isnan(prob.solution(torch.tensor(float("nan")), torch.tensor(0.1), param))


def test_same_seed_shares_the_design_as_documented():
    """make_dataset's docstring: the design stream depends on the seed only."""
    train = make_dataset("stefan", 2, seed=0)
    test = make_dataset("stefan", params=[0.5, 0.6], seed=0)
    assert torch.equal(train.x_context, test.x_context)
    assert torch.equal(train.x_target, test.x_target)
    other = make_dataset("stefan", params=[0.5, 0.6], seed=1)
    assert not torch.equal(other.x_context, test.x_context)


def test_diffusion_mass_and_flux_on_a_domain_that_is_not_a_period():
    """``Diffusion.mass`` / ``boundary_flux`` returned 0 for any ``x_range``; sin(x)e^{-kt}
    on [0, pi] has mass 2e^{-kt}. Now (cos x0 - cos x1)e^{-kt} and its time derivative,
    still exactly 0 on the default period."""
    import math

    from bayesphys.problems.gpme import Diffusion

    t = torch.tensor([0.1, 0.3, 0.7], dtype=torch.float64)
    d = Diffusion()
    assert torch.equal(d.mass(t, 2.0), torch.zeros(3, dtype=torch.float64))
    assert torch.equal(d.boundary_flux(t, 2.0), torch.zeros(3, dtype=torch.float64))
    for x_range in ((0.0, math.pi), (0.5, 4.0)):
        d = Diffusion(x_range=x_range)
        x = torch.linspace(*x_range, 20001, dtype=torch.float64)
        quad = torch.trapezoid(d.solution(t[:, None], x, 2.0), x, dim=-1)
        torch.testing.assert_close(d.mass(t, 2.0), quad, rtol=1e-8, atol=0)
        h = 1e-5
        dmdt = (d.mass(t + h, 2.0) - d.mass(t - h, 2.0)) / (2 * h)
        torch.testing.assert_close(d.boundary_flux(t, 2.0), dmdt, rtol=1e-8, atol=0)


def test_a_dataset_keeps_no_view_of_the_callers_params():
    """``make_dataset(params=t)`` kept ``t`` itself as ``data.params``: a later edit of ``t``
    relabelled the functions, whose values stayed those of the old parameters."""
    params = torch.tensor([1.0, 2.0], dtype=torch.float64)
    data = make_dataset("diffusion", params=params, seed=0)
    params.fill_(3.0)
    assert data.params.tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    "prob, param", [(Stefan(), 0.6), (PorousMedium(), 3.0), (Diffusion(), 2.0)]
)
def test_solution_propagates_a_nan_position(prob, param):
    x = torch.tensor([float("nan"), 0.01], dtype=F64)  # behind every family's front
    out = prob.solution(torch.tensor(0.05, dtype=F64), x, param)
    assert torch.isnan(out[0])  # Stefan gave 0: a NaN position read as ahead of the front
    assert torch.isfinite(out[1]) and out[1] > 0


@pytest.mark.parametrize("family", [Diffusion, PorousMedium, Stefan])
@pytest.mark.parametrize("field", ["x_range", "t_range"])
@pytest.mark.parametrize("value", [(1.0, 0.0), (0.5, 0.5), (0.0, float("nan"))])
def test_a_reversed_or_empty_domain_is_refused_by_name(family, field, value):
    """A reversed or empty ``x_range`` / ``t_range`` was accepted: reversed grids, negative
    masses and sign-flipped fluxes followed without a word."""
    with pytest.raises(ValueError, match=rf"^{field}"):
        family(**{field: value})


@pytest.mark.parametrize("params", [[True], [1.0, True], torch.tensor([True]), (False,), True])
def test_bool_params_are_refused_as_a_type_error(params):
    """``params=[True]`` was read as 1.0 (then reported out of range, or accepted)."""
    with pytest.raises(TypeError, match=r"^params: .*bool"):
        make_dataset("diffusion", params=params, seed=0)


def test_a_family_must_define_its_exact_solution_mass_flux_and_diffusivity():
    """The base class is the interface of a family: a subclass that leaves one of the four out
    is told so when it is used."""
    from bayesphys.problems.gpme import GPMEProblem

    base = GPMEProblem()
    u = torch.zeros(3, dtype=F64)
    for call in (
        lambda: base.solution(0.1, 0.5, 1.0),
        lambda: base.mass(0.1, 1.0),
        lambda: base.boundary_flux(0.1, 1.0),
        lambda: base.diffusivity(u, u),
    ):
        with pytest.raises(NotImplementedError):
            call()


def test_stefan_diffusivity_is_the_smoothed_step_at_the_melting_point():
    s = Stefan()
    u_star = torch.tensor(0.6, dtype=F64)
    u = torch.tensor([0.6, 0.6 + 20 * s.smooth, 0.6 - 20 * s.smooth], dtype=F64)
    k = s.diffusivity(u, u_star)
    assert float(k[0]) == 0.5 and float(k[1]) > 1 - 1e-8 and float(k[2]) < 1e-8


def test_stefan_constants_with_few_bisection_steps_are_coarser():
    """``iters`` caps the bisection: a few halvings give a root of the transcendental equation
    to about their width; the default runs to float64's fixed point."""
    u = torch.tensor([0.3, 0.6, 0.9], dtype=F64)

    def residual(alpha):
        z = alpha / 2
        return (u * torch.erf(z) * z * torch.exp(z * z) - (1 - u) / math.sqrt(math.pi)).abs()

    coarse, _ = stefan_constants(u, iters=6)
    fine, _ = stefan_constants(u)
    assert float(residual(fine).max()) < 1e-14
    assert float(residual(coarse).max()) > 1e-4
    assert float((coarse - fine).abs().max()) < 2 * 30 / 2**6  # within the bracket's width


@pytest.mark.parametrize(
    ("prob", "param", "name"),
    [(Diffusion(), 2.0, "k"), (PorousMedium(), 3.0, "m"), (Stefan(), 0.6, "u_star")],
)
@pytest.mark.parametrize("method", ["solution", "mass", "boundary_flux"])
def test_complex_times_and_parameters_are_refused_by_name(prob, param, name, method):
    # the float64 cast dropped the imaginary part without a word (PME and Stefan masses of
    # a complex time were those of its real part)
    t = torch.tensor([0.05 + 1j], dtype=torch.complex128)
    args = (lambda t_, p: (t_, 0.1, p)) if method == "solution" else (lambda t_, p: (t_, p))
    f = getattr(prob, method)
    with pytest.raises(TypeError, match=r"^t: expected real values, received complex"):
        f(*args(t, param))
    with pytest.raises(TypeError, match=rf"^{name}: expected real values, received complex"):
        f(*args(torch.tensor(0.05), torch.tensor(param + 1j)))


def test_stefan_helpers_refuse_complex_values_by_name():
    with pytest.raises(TypeError, match=r"^u_star: expected real values"):
        stefan_constants(torch.tensor(0.6 + 0j))
    with pytest.raises(TypeError, match=r"^t: expected real values"):
        stefan_front(torch.tensor(0.05 + 0j), 0.6)
