"""Gradients through the closed-form GPME reference solutions (a user's loss built on them)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from bayesphys.problems import get_gp_pde_problem
from bayesphys.problems.gpme import PorousMedium, Stefan, stefan_constants, stefan_front

F64 = torch.float64


def test_stefan_constants_carry_the_gradient_in_u_star():
    """The bisection's comparisons carry no gradient: alpha had d(alpha)/d(u*) = 0 and c1 only
    its explicit part, silently wrong gradients of every Stefan solution, mass and front."""
    u = torch.tensor([0.3, 0.6, 0.9], dtype=F64, requires_grad=True)
    assert gradcheck(stefan_constants, (u,))
    (g,) = torch.autograd.grad(stefan_constants(u)[0].sum(), u)
    assert bool((g < 0).all())  # a higher melting threshold slows the front


def test_stefan_solution_mass_and_front_gradcheck_in_u_star():
    p = Stefan()
    t = torch.tensor([0.01, 0.05], dtype=F64, requires_grad=True)
    x = torch.tensor([0.05, 0.2], dtype=F64, requires_grad=True)
    u = torch.tensor(0.6, dtype=F64, requires_grad=True)
    assert gradcheck(p.solution, (t, x, u))
    assert gradcheck(p.mass, (t, u))
    assert gradcheck(stefan_front, (t, u))


def test_stefan_mass_gradient_in_t_is_finite_from_the_start():
    """A time grid from t = 0 gave d mass / dt = NaN at t = 0 (the masked branch's sqrt of a
    clamped 1e-300 has an infinite derivative, times the mask's 0); subnormal t gave NaN too
    once t was not clamped. Now 0 at t <= 0 (the left derivative), b'(t) = boundary_flux(t)
    after, and the values are unchanged."""
    p = Stefan()
    t = torch.tensor([-0.01, 0.0, 1e-310, 1e-12, 0.01, 0.05, 0.1], dtype=F64, requires_grad=True)
    u = torch.tensor(0.6, dtype=F64, requires_grad=True)
    m = p.mass(t, u)
    gt, gu = torch.autograd.grad(m.sum(), (t, u))
    assert bool(torch.isfinite(gt).all()) and bool(torch.isfinite(gu))
    assert gt[:2].tolist() == [0.0, 0.0] and m[:2].tolist() == [0.0, 0.0]
    # (boundary_flux clamps a subnormal t to 1e-300: compared from t = 1e-12 on)
    assert float(gt[2]) > 0
    flux = p.boundary_flux(t.detach()[3:], 0.6)
    torch.testing.assert_close(gt[3:], flux, rtol=1e-12, atol=0)
    # the values are the closed form 2 c1 sqrt(t / pi) (front inside the domain)
    _, c1 = stefan_constants(0.6)
    ref = 2 * c1 * (t.detach()[2:] / torch.pi).sqrt()
    torch.testing.assert_close(m.detach()[2:], ref, rtol=1e-14, atol=0)


def test_stefan_constants_values_kept_at_the_extremes():
    """The implicit step attaches a gradient only: the values are the bisection's, and no NaN
    gradient where exp(z^2) overflows or z is 0."""
    u = torch.tensor([5e-324, 1e-300, 0.6, 1 - 1.1e-16], dtype=F64, requires_grad=True)
    alpha, c1 = stefan_constants(u)
    ref_alpha, ref_c1 = stefan_constants(u.detach())
    assert torch.equal(alpha.detach(), ref_alpha) and torch.equal(c1.detach(), ref_c1)
    (g,) = torch.autograd.grad((alpha + c1).sum(), u)
    assert bool(torch.isfinite(g).all())


def test_porous_medium_solution_has_finite_gradients_ahead_of_the_front():
    """(m relu(t - x))^(1/m) gave NaN gradients in t, x and m wherever u = 0 (x >= t)."""
    p = PorousMedium()
    t = torch.tensor([0.2, 0.5, 0.9], dtype=F64, requires_grad=True)
    x = torch.tensor([0.6, 0.1, 0.3], dtype=F64, requires_grad=True)
    m = torch.tensor(3.0, dtype=F64, requires_grad=True)
    gt, gx, gm = torch.autograd.grad(p.solution(t, x, m).sum(), (t, x, m))
    for g in (gt, gx, gm):
        assert bool(torch.isfinite(g).all())
    assert float(gt[0]) == 0.0 and float(gx[0]) == 0.0  # ahead of the front
    assert gradcheck(p.solution, (t, x, m))


def test_porous_medium_solution_values_and_nan_kept():
    p = PorousMedium()
    tt, xx = torch.meshgrid(
        torch.linspace(0, 1, 11, dtype=F64), torch.linspace(0, 1, 11, dtype=F64), indexing="ij"
    )
    for m in (1.0, 3.0, 6.0):
        assert torch.equal(p.solution(tt, xx, m), (m * torch.relu(tt - xx)).pow(1 / m))
    nan = float("nan")
    out = p.solution(torch.tensor([nan, 0.5], dtype=F64), torch.tensor([0.1, nan], dtype=F64), 2.0)
    assert bool(torch.isnan(out).all())


def test_pde_problem_source_warns_for_axes_that_require_grad():
    """The source is formed by autograd of the exact solution and detached: axes that require
    grad got a detached source without a word (the solution is differentiable)."""
    p = get_gp_pde_problem("poisson1d-low")
    axis = torch.linspace(0, 1, 5, dtype=F64)
    with pytest.warns(UserWarning, match=r"^PDEProblem\.source: axes requires grad, but"):
        f = p.source([axis.clone().requires_grad_()])
    assert not f.requires_grad
    torch.testing.assert_close(f, p.source([axis]))
    ax = axis.clone().requires_grad_()
    (g,) = torch.autograd.grad(p.solution([ax]).sum(), ax)
    assert bool(torch.isfinite(g).all())
