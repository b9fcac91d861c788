"""Sparse Jacobians by column colouring (odil/sparse.py) and the sparse Gauss-Newton solve."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.odil import (
    ColouredJacobian,
    DiscreteProblem,
    column_colours,
    d1,
    d2,
    minimize,
)
from bayesphys.odil.solvers import dense_jacobian, jvp_vjp


def _advection_problem(nt: int, nx: int, *, periodic_shift: int = 1, wide: bool = False):
    """A B0-like residual: u_t - D u_xx - s + v u_x on an (nt, nx) grid, periodic in x
    (``torch.roll``), with three parameters; ``wide`` adds a term two cells away."""
    gen = torch.Generator().manual_seed(nt * 100 + nx)
    u_first = torch.rand(nx, generator=gen, dtype=torch.float64)
    u_last = torch.rand(nx, generator=gen, dtype=torch.float64)

    def res(f, p):
        u = torch.cat([u_first[None], f["u"], u_last[None]], 0)
        c = p["coeff"]
        ut = u[1:] - u[:-1]
        uxx = 0.5 * (d2(u[1:], 1, 0.1) + d2(u[:-1], 1, 0.1))
        ux = 0.5 * (d1(u[1:], 1, 0.1, "central") + d1(u[:-1], 1, 0.1, "central"))
        out = {"pde": ut - c[0] * uxx - c[1] + c[2] * ux * u[1:], "reg": 0.1 * f["u"]}
        if wide:
            out["wide"] = f["u"] - torch.roll(f["u"], 2 * periodic_shift, dims=1)
        return out

    prob = DiscreteProblem({"u": (nt - 2, nx)}, {"coeff": torch.tensor([0.3, 0.1, 0.2])}, res)
    x = torch.randn(prob.n, generator=gen, dtype=torch.float64)
    return prob, x


@settings(max_examples=25, deadline=None)
@given(nt=st.integers(3, 9), nx=st.integers(2, 11), wide=st.booleans())
def test_coloured_jacobian_equals_the_dense_one(nt, nx, wide):
    prob, x = _advection_problem(nt, nx, wide=wide)
    r, jv, _ = jvp_vjp(prob.residual, x)
    jac = ColouredJacobian(prob, 1)(jv, r.numel())
    dense = dense_jacobian(prob.residual, x)
    assert torch.allclose(torch.as_tensor(jac.toarray()), dense, rtol=1e-12, atol=1e-12)


def test_colours_separate_every_window_including_periodic_wraps():
    # 64 cells: 64 mod 3 = 1 would give cells 0 and 63 one colour under a plain "mod 3"
    prob, _ = _advection_problem(8, 64)
    col = column_colours(prob, 1).reshape(-1)[: prob.field_shapes["u"][0] * 64].reshape(6, 64)
    for i in range(64):
        window = [col[0, (i + d) % 64] for d in (-1, 0, 1)]
        assert len(set(int(c) for c in window)) == 3
    params = column_colours(prob, 1)[prob.slices["coeff"]]
    assert len(set(params.tolist())) == 3 and int(params.min()) > int(col.max())


def test_a_stencil_wider_than_declared_refines_the_colouring():
    prob, x = _advection_problem(6, 20, wide=True)
    r, jv, _ = jvp_vjp(prob.residual, x)
    cj = ColouredJacobian(prob, 0)  # radius 0 for a radius-2 stencil
    jac = cj(jv, r.numel())
    assert cj.level > 0
    dense = dense_jacobian(prob.residual, x)
    assert torch.allclose(torch.as_tensor(jac.toarray()), dense, rtol=1e-12, atol=1e-12)


def test_sparse_gauss_newton_matches_the_dense_solve():
    prob, x0 = _advection_problem(7, 10)
    xs, rs = minimize(prob, x0, method="gn", steps=6, linear_solver="sparse", tol=None)
    xd, rd = minimize(prob, x0, method="gn", steps=6, linear_solver="dense", tol=None)
    assert torch.allclose(xs, xd, rtol=1e-9, atol=1e-10)
    assert rs.loss_history[-1] == pytest.approx(rd.loss_history[-1], rel=1e-8, abs=1e-14)
    xl, _ = minimize(prob, x0, method="lm", steps=6, linear_solver="sparse")
    assert prob.loss(xl) <= prob.loss(x0)


def test_sparse_solver_refusals():
    prob, x0 = _advection_problem(5, 6)
    with pytest.raises(ValueError, match="stencil_radius: only used by linear_solver='sparse'"):
        minimize(prob, x0, method="gn", steps=1, stencil_radius=2)
    p32 = DiscreteProblem({"u": (4,)}, {}, lambda f, p: {"r": f["u"]}, dtype=torch.float32)
    with pytest.raises(ValueError, match="float64"):
        minimize(p32, method="gn", steps=1, linear_solver="sparse")
    mg = DiscreteProblem({"u": (8,)}, {}, lambda f, p: {"r": f["u"]}, multigrid={"u": 2})
    with pytest.raises(ValueError, match="multigrid"):
        minimize(mg, method="gn", steps=1, linear_solver="sparse")
    with pytest.raises(ValueError, match="linear_solver: expected 'cg', 'sparse' or 'dense'"):
        minimize(prob, x0, method="gn", steps=1, linear_solver="lu")
    # an unknown no residual touches gets no step (as with CG); a rank-deficient J^T J is
    # refused by name
    free = DiscreteProblem({"u": (3,)}, {"a": 0.5}, lambda f, p: {"r": f["u"] - 1.0})
    x, _ = minimize(free, method="gn", steps=1, linear_solver="sparse")
    assert torch.allclose(x, torch.tensor([1.0, 1.0, 1.0, 0.5], dtype=torch.float64))
    tied = DiscreteProblem({"u": (2,)}, {}, lambda f, p: {"r": (f["u"].sum() - 1.0).reshape(1)})
    with pytest.raises(ValueError, match="singular"):
        minimize(tied, method="gn", steps=1, linear_solver="sparse")


@pytest.mark.parametrize("shape", [(7,), (5, 4, 6)])
def test_coloured_jacobian_with_two_fields_and_a_vector_parameter(shape):
    from bayesphys.odil import laplacian

    gen = torch.Generator().manual_seed(len(shape))

    def res(f, p):
        u, v = f["u"], f["v"]
        a = p["a"]
        lap = laplacian(u, [0.5] * len(shape))  # a radius-1 stencil on every axis
        return {
            "u": lap - a[0] * u * v + a[1],
            "v": v - torch.roll(u, 1, dims=0) * a[2],
            "prior": a - 1.0,
        }

    prob = DiscreteProblem({"u": shape, "v": shape}, {"a": torch.tensor([0.3, -0.2, 1.5])}, res)
    x = torch.randn(prob.n, generator=gen, dtype=torch.float64)
    r, jv, _ = jvp_vjp(prob.residual, x)
    jac = ColouredJacobian(prob, 1)(jv, r.numel())
    dense = dense_jacobian(prob.residual, x)
    assert torch.allclose(torch.as_tensor(jac.toarray()), dense, rtol=1e-12, atol=1e-12)
