"""Restarted GMRES against a dense solve (property test); PicardKronSolve's Newton-GMRES finish:
its Newton matrix against a central difference of the fixed-point map, its fixed point against
Picard's, and its fast convergence where the cubic term dominates."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.gp_pde import PicardKronSolve
from bayesphys.gp_pde.nonlinear import gmres

from .test_input_checks import _cubic

F64 = torch.float64


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 30),
    restart=st.integers(1, 12),
    skew=st.floats(0.0, 2.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_gmres_matches_a_dense_solve(n, restart, skew, seed):
    gen = torch.Generator().manual_seed(seed)
    # well conditioned and nonsymmetric: I * 3 + a skew part + a small random part
    s = torch.randn(n, n, generator=gen, dtype=F64)
    a = 3 * torch.eye(n, dtype=F64) + skew * (s - s.T) / n**0.5
    a = a + 0.3 * torch.randn(n, n, generator=gen, dtype=F64) / n**0.5
    b = torch.randn(n, generator=gen, dtype=F64)
    x, iters, relres = gmres(lambda v: a @ v, b, tol=1e-11, restart=restart, maxiter=2000)
    exact = torch.linalg.solve(a, b)
    assert relres <= 1e-10
    # the reported residual is the true one
    assert abs(float((a @ x - b).norm() / b.norm()) - relres) < 1e-14
    torch.testing.assert_close(x, exact, rtol=1e-8, atol=1e-9)
    assert 1 <= iters <= 2000


def test_gmres_of_a_zero_right_hand_side_is_zero():
    x, iters, relres = gmres(lambda v: 2 * v, torch.zeros(5, dtype=F64))
    assert torch.equal(x, torch.zeros(5, dtype=F64)) and iters == 0 and relres == 0.0


def test_newton_finishes_at_the_picard_fixed_point():
    op, fac, f, gb = _cubic()
    picard = PicardKronSolve(fac, op, 2.0, 30.0, max_iter=200, tol=1e-13)
    u_star = picard.solve(f, gb)
    assert picard.step_norms[-1] <= 1e-13  # Picard alone converges on this small problem
    # one Picard step only (its update 2e-8), then Newton-GMRES from there
    newton = PicardKronSolve(fac, op, 2.0, 30.0, max_iter=1, tol=1e-13, newton=True)
    u = newton.solve(f, gb)
    assert newton.newton_steps >= 1 and newton.krylov_iters >= 1
    torch.testing.assert_close(u, u_star, rtol=1e-9, atol=1e-10)


def test_newton_matvec_is_the_derivative_of_the_fixed_point_map():
    """``I - Phi'(U)`` against a central difference of Phi at a field where ``U^3`` matters.

    Phi is cubic in U, so the central difference's error is ``h^2 S(v^3)``: far below the
    tolerance at h = 1e-4."""
    op, fac, f, gb = _cubic()
    f, gb = 1000 * f, 1000 * gb
    solver = PicardKronSolve(fac, op, 2.0, 30.0, max_iter=1, tol=1e-13)
    gen = torch.Generator().manual_seed(0)
    u = 3 * torch.randn(f.shape, generator=gen, dtype=F64)
    shift = float((3 * u * u).mean())
    ks = solver._shifted(shift)

    def phi(v):
        return ks.solve(f - v**3 + shift * v, gb)

    jv = solver._newton_matvec(ks, u, shift, torch.zeros_like(gb))
    h = 1e-4
    for _ in range(3):
        v = torch.randn(f.shape, generator=gen, dtype=F64)
        fd = v - (phi(u + h * v) - phi(u - h * v)) / (2 * h)
        got = jv(v.reshape(-1)).reshape(f.shape)
        torch.testing.assert_close(got, fd, rtol=1e-6, atol=1e-8)
        # the cubic term is not negligible here: dropping it changes the product
        assert float((got - (v + ks.solve(-shift * v, torch.zeros_like(gb)))).norm()) > 0.1 * float(
            got.norm()
        )


def test_newton_converges_fast_where_the_cubic_term_dominates():
    """With fields of order 3 (3 U^2 ~ 25 against the shift), Newton from one Picard step reaches
    the Picard fixed point in a few steps, each shrinking the update by orders of magnitude."""
    op, fac, f, gb = _cubic()
    f, gb = 1000 * f, 1000 * gb
    picard = PicardKronSolve(fac, op, 2.0, 30.0, max_iter=300, tol=1e-13)
    u_star = picard.solve(f, gb)
    assert picard.step_norms[-1] <= 1e-13 and float(u_star.abs().max()) > 2.0
    newton = PicardKronSolve(fac, op, 2.0, 30.0, max_iter=1, tol=1e-13, newton=True)
    u = newton.solve(f, gb)
    torch.testing.assert_close(u, u_star, rtol=1e-10, atol=1e-12)
    assert 1 <= newton.newton_steps <= 4
    # the updates of the Newton phase (after the single Picard step) fall superlinearly
    steps = newton.step_norms[1:]
    assert all(b < 0.01 * a for a, b in zip(steps, steps[1:], strict=False))


def test_gmres_checks_its_settings():
    """``restart=0`` failed with an UnboundLocalError; bad counts and tolerances are named."""
    b = torch.ones(3, dtype=F64)
    with pytest.raises(ValueError, match="restart"):
        gmres(lambda v: v, b, restart=0)
    with pytest.raises(ValueError, match="maxiter"):
        gmres(lambda v: v, b, maxiter=-1)
    with pytest.raises(ValueError, match="tol"):
        gmres(lambda v: v, b, tol=float("nan"))


def test_picard_reports_whether_it_met_its_stopping_rule():
    """Picard had no ``converged`` flag (Gauss-Newton has one): a solve that ran out of
    ``max_iter`` and returned its best iterate could not be told from one that met ``tol``."""
    op, fac, f, gb = _cubic()
    done = PicardKronSolve(fac, op, 2.0, 30.0, max_iter=200, tol=1e-13)
    assert done.converged is False and done.stop_reason == "not solved"
    u_star = done.solve(f, gb)
    assert done.converged is True and done.step_norms[-1] <= 1e-13
    assert done.stop_reason.startswith("converged: relative update")
    # the same iteration cut short: the best iterate so far, not converged, and it says so
    short = PicardKronSolve(fac, op, 2.0, 30.0, max_iter=1, tol=1e-13)
    u = short.solve(f, gb)
    assert short.iterations == 1 and min(short.step_norms) > 1e-13
    assert short.converged is False
    assert "max_iter=1 reached" in short.stop_reason
    assert short.stop_reason.startswith("not converged")
    assert float((u - u_star).norm()) > 0
    # a later converged solve by the same solver clears the flag it left
    short.max_iter = 200
    short.solve(f, gb)
    assert short.converged is True
    # Newton's finish meets its own rule: converged, and the reason names the Newton phase
    newton = PicardKronSolve(fac, op, 2.0, 30.0, max_iter=1, tol=1e-13, newton=True)
    newton.solve(f, gb)
    assert newton.converged is True and "Newton steps" in newton.stop_reason


def test_gmres_with_no_iterations_returns_the_zero_start():
    x, iters, relres = gmres(lambda v: 2 * v, torch.ones(4, dtype=F64), maxiter=0)
    assert torch.equal(x, torch.zeros(4, dtype=F64)) and iters == 0 and relres == 1.0


def test_picard_refuses_a_linear_operator():
    from dataclasses import replace

    op, fac, f, gb = _cubic()
    with pytest.raises(
        ValueError, match=r"^op: PicardKronSolve is for the cubic \(Allen-Cahn\) operator$"
    ):
        PicardKronSolve(fac, replace(op, cubic=False), 2.0, 30.0)


def test_picard_a_non_finite_first_update_is_a_divergence():
    from bayesphys.gp_pde._errors import NumericalFailure

    op, fac, f, gb = _cubic()
    p = PicardKronSolve(fac, op, 2.0, 30.0)
    with pytest.raises(NumericalFailure, match="the fixed-point iteration diverged"):
        p.solve(f, gb, u0=torch.full(f.shape, 1e80, dtype=F64))  # the update's norm overflows
    assert p.stop_reason == "diverged: non-finite update" and p.converged is False


def test_picard_whose_updates_grow_returns_its_best_iterate_and_says_so():
    """Plain Picard (``depth=0``: no mixing, fixed shift 0) on a source large enough for the
    cubic term to dominate: the updates grow, and the iterate with the smallest update is
    returned, not converged."""
    op, fac, f, gb = _cubic()
    p = PicardKronSolve(fac, op, 2.0, 30.0, max_iter=60, tol=1e-13, shift=0.0, depth=0)
    u = p.solve(1e4 * f, 1e4 * gb)
    assert not p.converged and p.iterations < 60
    assert p.step_norms[-1] > 1e3 * min(p.step_norms)
    assert p.stop_reason.startswith(
        f"not converged: the update grew to {p.step_norms[-1]:.2e} after {p.iterations} iterations"
    )
    assert f"smallest update ({min(p.step_norms):.2e})" in p.stop_reason
    assert bool(torch.isfinite(u).all())


def test_picard_that_stalls_is_finished_by_newton():
    """A shift far above the field's (contraction near 1: the update shrinks by less than half
    in 8 iterations) stalls Picard; with ``newton=True`` Newton-GMRES finishes at the fixed
    point of the same shifted map, which Anderson mixing (the default ``depth``) reaches."""
    op, fac, f, gb = _cubic()
    ref = PicardKronSolve(fac, op, 2.0, 30.0, max_iter=500, tol=1e-13, shift=100.0)
    u_star = ref.solve(f, gb)
    assert ref.converged
    slow = PicardKronSolve(fac, op, 2.0, 30.0, max_iter=60, tol=1e-13, shift=100.0, depth=0)
    slow.solve(f, gb)
    assert not slow.converged  # Picard alone: 60 iterations are not enough
    p = PicardKronSolve(
        fac, op, 2.0, 30.0, max_iter=60, tol=1e-13, shift=100.0, depth=0, newton=True
    )
    u = p.solve(f, gb)
    assert p.converged and p.newton_steps >= 1 and p.iterations - p.newton_steps < 60
    torch.testing.assert_close(u, u_star, rtol=1e-9, atol=1e-11)


def test_picard_newton_that_runs_out_of_steps_or_diverges_is_a_numerical_failure(monkeypatch):
    import bayesphys.gp_pde.nonlinear as nl
    from bayesphys.gp_pde._errors import NumericalFailure

    op, fac, f, gb = _cubic()
    p = PicardKronSolve(fac, op, 2.0, 30.0, max_iter=1, tol=1e-13, newton=True, max_newton=1)
    with pytest.raises(NumericalFailure, match=r"^PicardKronSolve: Newton-GMRES did not converge"):
        p.solve(f, gb)
    assert p.stop_reason == "not converged: max_newton=1 Newton steps reached"
    assert p.newton_steps == 1 and not p.converged
    real = nl.gmres

    def far(*args, **kwargs):  # a Newton step far out: 1e80 in every entry
        return torch.full_like(real(*args, **kwargs)[0], 1e80), 1, 0.0

    monkeypatch.setattr(nl, "gmres", far)
    p = PicardKronSolve(fac, op, 2.0, 30.0, max_iter=1, tol=1e-13, newton=True)
    with pytest.raises(NumericalFailure, match="the fixed-point iteration diverged"):
        p.solve(f, gb)  # the update after that step is not finite
    assert p.stop_reason == "diverged: non-finite update in the Newton phase"
