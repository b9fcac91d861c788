"""Sparse Jacobians by column colouring (odil/sparse.py) and the sparse Gauss-Newton solve."""

from __future__ import annotations

import math

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
    with pytest.raises(ValueError, match="stencil_radius: only used by method='gn' or 'lm' wit"):
        minimize(prob, x0, method="gn", steps=1, stencil_radius=2)
    for method in ("adam", "lbfgs"):  # no linear solve: it was ignored without a word
        with pytest.raises(ValueError, match="stencil_radius: only used by method='gn' or 'lm'"):
            minimize(prob, x0, method=method, steps=1, linear_solver="sparse", stencil_radius=2)
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
    with pytest.raises(ValueError, match="singular") as info:
        minimize(tied, method="gn", steps=1, linear_solver="sparse")
    x_last, loss_last, step = info.value.partial_result  # the last good iterate is kept
    assert torch.equal(x_last, tied.initial()) and step == 0 and loss_last == 0.5


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


@pytest.mark.parametrize("chunk", [1, 2, 5, 10, 11, 12])
def test_colours_probed_in_chunks_give_the_same_jacobian(monkeypatch, chunk):
    """The colours are probed ``_CHUNK`` (64) at a time: with 11 colours, chunks of 1, 2, 5,
    C - 1 (last partial chunks), C and C + 1 assemble the Jacobian of one call, entry for
    entry, and the dense one."""
    import bayesphys.odil.sparse as sparse
    from bayesphys.odil import laplacian

    def res(f, p):
        u, v, a = f["u"], f["v"], p["a"]
        return {
            "u": laplacian(u, [0.5]) - a[0] * u * v + a[1],
            "v": v - torch.roll(u, 1, dims=0) * a[2],
            "prior": a - 1.0,
        }

    prob = DiscreteProblem({"u": (7,), "v": (7,)}, {"a": torch.tensor([0.3, -0.2, 1.5])}, res)
    x = torch.randn(prob.n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    r, jv, _ = jvp_vjp(prob.residual, x)
    cj = ColouredJacobian(prob, 1)
    assert cj.num_colours == 11
    whole = cj(jv, r.numel()).toarray()
    monkeypatch.setattr(sparse, "_CHUNK", chunk)
    batches = []
    monkeypatch.setattr(
        sparse,
        "_products",
        lambda jv, t, real=sparse._products: batches.append(len(t)) or real(jv, t),
    )
    got = ColouredJacobian(prob, 1)(jv, r.numel()).toarray()
    assert batches == [3 * min(chunk, 11 - lo) for lo in range(0, 11, chunk)]
    assert (got == whole).all()
    dense = dense_jacobian(prob.residual, x)
    assert torch.allclose(torch.as_tensor(got), dense, rtol=1e-12, atol=1e-12)


def _assembled(prob, x, radius, rows=None):
    """The colouring and the assembled Jacobian (its ``rows`` only, when given) as a tensor."""
    r, jv, _ = jvp_vjp(prob.residual, x)
    cj = ColouredJacobian(prob, radius)
    jac = cj(jv, r.numel())
    return cj, torch.as_tensor((jac if rows is None else jac[rows]).toarray())


def test_products_that_cancel_to_zero_are_not_taken_as_an_empty_row():
    # a third difference read with radius 0: the four same-colour columns' products (1, x, x^2
    # weighted by 1, -3, 3, -1) all vanish, which once returned an all-zero Jacobian
    def res(f, p):
        u = f["u"]
        return {"r": u[3:] - 3 * u[2:-1] + 3 * u[1:-2] - u[:-3]}

    prob = DiscreteProblem({"u": (12,)}, {}, res)
    x = torch.randn(prob.n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cj, jac = _assembled(prob, x, 0)
    assert cj.level > 0
    assert torch.allclose(jac, dense_jacobian(prob.residual, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("coef", [1e-4, -2.0])
def test_a_mixture_far_along_the_index_is_caught(coef):
    # two same-colour columns of field b, after 200 000 unknowns of field a: the index ratios
    # alone accepted the mixture (as one entry, or as a wrong column)
    def res(f, p):
        b = f["b"]
        return {"a": f["a"] - 1.0, "b": b[:6] + coef * b[3:9]}

    prob = DiscreteProblem({"a": (200_000,), "b": (9,)}, {}, res)
    x = torch.zeros(prob.n, dtype=torch.float64)
    cj, jac = _assembled(prob, x, 1, rows=slice(200_000, 200_006))
    want = torch.zeros(6, 9, dtype=torch.float64)
    want[range(6), range(6)] = 1.0
    want[range(6), range(3, 9)] += coef
    assert torch.allclose(jac[:, 200_000:], want, rtol=1e-12, atol=0)
    assert not bool(jac[:, :200_000].any())
    assert cj.level > 0


def test_entries_at_rounding_level_are_dropped_not_refused():
    # flux-form diffusion with the coefficient as a parameter on a linear field: dr/dD is a
    # second difference of u, zero up to rounding; it used to refine to one colour per cell
    # and then refuse the problem
    def res(f, p):
        u = f["u"]
        flux = p["D"] * (u[1:] - u[:-1])
        return {"pde": flux[1:] - flux[:-1], "bc": u[[0, -1]] - torch.tensor([0.0, 1.0])}

    prob = DiscreteProblem({"u": (41,)}, {"D": 0.7}, res)
    x = prob.pack({"u": torch.linspace(0, 1, 41, dtype=torch.float64)})
    cj, jac = _assembled(prob, x, 1)
    assert cj.level == 0
    assert torch.allclose(jac, dense_jacobian(prob.residual, x), rtol=1e-9, atol=1e-12)


def test_a_non_local_residual_is_refused_by_name(monkeypatch):
    import bayesphys.odil.sparse as sparse

    monkeypatch.setattr(sparse, "MAX_COLOURS", 50)
    prob = DiscreteProblem({"u": (300,)}, {}, lambda f, p: {"r": f["u"] - f["u"].sum()})
    with pytest.raises(ValueError, match="stencil_radius: the residuals couple cells farther"):
        minimize(prob, method="gn", steps=1, linear_solver="sparse")


def test_sparse_helpers_name_their_bad_arguments():
    from bayesphys.odil import sparse_normal_solve, sparse_schur_covariance, theta_covariance

    prob, x = _advection_problem(5, 6)
    with pytest.raises(TypeError, match="problem: expected a DiscreteProblem"):
        ColouredJacobian("prob", 1)
    with pytest.raises(ValueError, match="stencil_radius: only used with sparse=True"):
        theta_covariance(prob, x, ["coeff"], stencil_radius=2)
    with pytest.raises(TypeError, match="sparse"):
        theta_covariance(prob, x, ["coeff"], sparse="yes")
    r, jv, _ = jvp_vjp(prob.residual, x)
    jac = ColouredJacobian(prob, 1)(jv, r.numel())
    with pytest.raises(ValueError, match="lam"):
        sparse_normal_solve(jac, r, -1.0)
    with pytest.raises(ValueError, match=r"^r: expected a tensor of shape"):
        sparse_normal_solve(jac, r[:-1], 0.1)  # a raw scipy "dimension mismatch" before
    t = torch.tensor([prob.slices["coeff"].start])
    assert sparse_schur_covariance(jac, t).shape == (1, 1)
    for bad in (t - prob.n, t + prob.n, torch.cat([t, t]), t[:, None]):
        with pytest.raises(ValueError, match=r"^t_idx: expected distinct indices"):
            sparse_schur_covariance(jac, bad)  # a wrong answer, IndexError or LinAlgError before
    with pytest.raises(TypeError, match=r"^t_idx: expected an integer tensor"):
        sparse_schur_covariance(jac, t.double() + 0.7)  # was truncated to t
    with pytest.raises(TypeError, match=r"^t_idx: expected an integer tensor"):
        sparse_schur_covariance(jac, torch.arange(prob.n) >= t)  # a mask read as 0 and 1


def test_a_jv_that_takes_one_tangent_at_a_time_gives_the_same_jacobian():
    """``jv`` may refuse a batch of tangents (an op without a batching rule) or return another
    shape for it: the products are then taken one tangent at a time."""
    prob, x = _advection_problem(5, 6)
    r, jv, _ = jvp_vjp(prob.residual, x)
    want = ColouredJacobian(prob, 1)(jv, r.numel()).toarray()

    def single(v):
        if v.ndim != 1:
            raise NotImplementedError("no batching rule")
        return jv(v)

    def flat(v):  # a batch summed into one product: the wrong shape
        return jv(v).sum(0) if v.ndim == 2 else jv(v)

    for one in (single, flat):
        got = ColouredJacobian(prob, 1)(one, r.numel()).toarray()
        assert (got == want).all()


def test_sparse_refusals_of_a_jacobian_or_a_step_that_cannot_be_had():
    import numpy as np
    import scipy.sparse as sp

    from bayesphys.odil import sparse_normal_solve

    with pytest.raises(TypeError, match=r"^problem: expected a DiscreteProblem, received str$"):
        column_colours("prob", 1)
    prob, x = _advection_problem(5, 6)
    r, jv, _ = jvp_vjp(prob.residual, x)
    g = torch.Generator().manual_seed(0)

    def inconsistent(v):  # products that are no linear map: noise every call
        return torch.randn(*v.shape[:-1], r.numel(), generator=g, dtype=torch.float64)

    with pytest.raises(
        ValueError, match=r"^linear_solver: the sparse Jacobian could not be assembled even with"
    ):
        ColouredJacobian(prob, 1)(inconsistent, r.numel())
    # finite J and r whose step overflows: J^T J = 1e-300, g = 1e150
    jac = sp.csr_matrix(np.array([[1e-150, 0.0], [0.0, 1.0]]))
    with pytest.raises(
        ValueError, match=r"^linear_solver: the sparse Gauss-Newton solve gave non-finite values$"
    ):
        sparse_normal_solve(jac, torch.tensor([1e300, 1.0], dtype=torch.float64), 0.0)


def test_sparse_normal_solve_names_a_non_finite_residual_or_jacobian():
    """A NaN residual was reported as a failed solve naming linear_solver, and a NaN entry of
    J as a singular J^T J ("some unknown is not determined"): neither named the bad input."""
    import numpy as np
    import scipy.sparse as sp

    from bayesphys.odil import sparse_normal_solve

    jac = sp.csr_matrix(np.eye(2))
    with pytest.raises(ValueError, match=r"^r: expected finite values, received 1 NaN/Inf"):
        sparse_normal_solve(jac, torch.tensor([math.nan, 1.0], dtype=torch.float64), 0.0)
    bad = sp.csr_matrix(np.array([[math.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(
        ValueError, match=r"^jac: expected finite entries, received 1 NaN/Inf entries$"
    ):
        sparse_normal_solve(bad, torch.ones(2, dtype=torch.float64), 0.0)
