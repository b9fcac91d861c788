import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.gp_pde import DenseSolve, KronSolve, LinearPDEOperator, SpectralMixture1d, objective
from bayesphys.gp_pde._kron import face_values, kron_apply, kron_dense, scatter_faces
from bayesphys.gp_pde.nonlinear import PicardKronSolve
from bayesphys.gp_pde.operator import apply_operator, build_factors

F64 = torch.float64


def _setup(shape, seed, q=3, c0=0.0):
    g = torch.Generator().manual_seed(seed)
    axes = [torch.linspace(0, 1 + 0.5 * j, n, dtype=F64) for j, n in enumerate(shape)]
    ks = [
        SpectralMixture1d(
            q,
            kind=("gm", "stm")[j % 2],
            mu=torch.rand(q, generator=g, dtype=F64) * 3,
            log_a=torch.randn(q, generator=g, dtype=F64) * 0.3,
        )
        for j in range(len(shape))
    ]
    op = LinearPDEOperator(
        (2,) * len(shape), tuple(1.0 + 0.5 * j for j in range(len(shape))), c0=c0
    )
    fac = build_factors(ks, axes, op, eigen=True, jitter=1e-4)
    f = torch.randn(shape, generator=g, dtype=F64)
    gb = torch.randn(face_values(f, shape).shape, generator=g, dtype=F64)
    return ks, axes, op, fac, f, gb


shapes = st.one_of(
    st.tuples(st.integers(5, 14)),
    st.tuples(st.integers(4, 9), st.integers(4, 8)),
)


def assert_kron_solve_matches_dense(shape, seed, tau, gamma):
    """The Kronecker solve's posterior mean and covariance of U against the dense solve's;
    returns the Kronecker solver and its dense covariance ``[m, m]`` for further checks."""
    _, _, op, fac, f, gb = _setup(shape, seed)
    ds = DenseSolve(fac, op, "prior")
    ud = ds.solve(f, gb, tau, gamma)
    ks = KronSolve(fac, op, tau, gamma)
    uk = ks.solve(f, gb)
    torch.testing.assert_close(uk, ud, rtol=1e-7, atol=1e-8 * float(ud.abs().max()))
    # posterior covariance of U: R P^-1 R^T vs dense L P^-1 L^T
    m = math.prod(shape)
    eye = torch.eye(m, dtype=F64).reshape(m, *shape)
    cov_k = kron_apply(ks.R, ks.precision_solve(kron_apply(ks.Rt, eye))).reshape(m, m)
    torch.testing.assert_close(
        cov_k, ds.cov_u(), rtol=1e-6, atol=1e-9 * float(ds.cov_u().abs().max())
    )
    return ks, cov_k


@settings(max_examples=12, deadline=None)
@given(
    shape=shapes, seed=st.integers(0, 10_000), tau=st.floats(0.1, 100.0), gamma=st.floats(1.0, 1e3)
)
def test_kron_solve_matches_dense(shape, seed, tau, gamma):
    ks, cov_k = assert_kron_solve_matches_dense(shape, seed, tau, gamma)
    # structured variances on a random "test" map
    T = [torch.randn(3, n, dtype=F64) for n in shape]
    Td = kron_dense(T)
    torch.testing.assert_close(
        ks.test_variance(T).reshape(-1), torch.diagonal(Td @ cov_k @ Td.mT), rtol=1e-6, atol=1e-12
    )


@settings(max_examples=8, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000))
def test_kron_logdet_and_quadratic_form_match_dense(shape, seed):
    _, _, op, fac, f, gb = _setup(shape, seed)
    C = kron_dense([fc.C for fc in fac])
    zero = torch.zeros((), dtype=F64)
    # objective with only the prior term active: 1/2 u^T C^-1 u + 1/2 log|C| (+ terms at tau -> 0)
    u = f
    got = objective(fac, op, u, f, face_values(u, shape), zero, zero, 0.0, "identity")
    r = apply_operator(fac, op, u) - f
    want = (
        0.5 * u.reshape(-1) @ torch.linalg.solve(C, u.reshape(-1))
        + 0.5 * torch.linalg.slogdet(C)[1]
        + 0.5 * (r * r).sum()
    )
    # the dense reference solve is itself only accurate to ~cond(C) * eps
    rtol = max(1e-9, 10.0 * float(torch.linalg.cond(C)) * torch.finfo(F64).eps)
    torch.testing.assert_close(got, want, rtol=rtol, atol=1e-8)


def test_kron_samples_have_the_posterior_covariance():
    _, _, op, fac, f, gb = _setup((6, 5), 3)
    ks = KronSolve(fac, op, 5.0, 50.0)
    ks.solve(f, gb)
    ds = DenseSolve(fac, op, "prior")
    ds.solve(f, gb, 5.0, 50.0)
    n = 40_000
    z = torch.randn(n, ks.root_dim, dtype=F64, generator=torch.Generator().manual_seed(0))
    s = ks.sample_u(z).reshape(n, -1)
    emp = s.mT @ s / n
    ref = ds.cov_u()
    assert float((emp - ref).abs().max()) < 0.05 * float(ref.diagonal().max())


def test_operator_matches_dense_kronecker_sum():
    _, _, op, fac, f, _ = _setup((6, 7), 1, c0=-0.7)
    A = (
        -0.7 * torch.eye(42, dtype=F64)
        + op.coefs[0] * torch.kron(fac[0].D, torch.eye(7, dtype=F64))
        + op.coefs[1] * torch.kron(torch.eye(6, dtype=F64), fac[1].D)
    )
    torch.testing.assert_close(apply_operator(fac, op, f).reshape(-1), A @ f.reshape(-1))


def test_faces_adjoint():
    shape = (5, 4)
    u = torch.randn(shape, dtype=F64)
    e = torch.randn(face_values(u, shape).shape, dtype=F64)
    torch.testing.assert_close(
        (face_values(u, shape) * e).sum(), (u * scatter_faces(e, shape)).sum()
    )


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple),
    batch=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_kron_apply_and_faces_against_dense(shape, batch, seed):
    # mode products = the dense Kronecker product on vec(U) (C order), with a batch dim; the
    # boundary scatter is the adjoint of the face gather in 1-D to 3-D, size-1 axes included
    g = torch.Generator().manual_seed(seed)
    mats = [torch.randn(n + 1, n, generator=g, dtype=F64) for n in shape]
    u = torch.randn(batch, *shape, generator=g, dtype=F64)
    got = kron_apply(mats, u).reshape(batch, -1)
    torch.testing.assert_close(got, u.reshape(batch, -1) @ kron_dense(mats).mT)
    e = torch.randn(face_values(u, shape).shape, generator=g, dtype=F64)
    torch.testing.assert_close(
        (face_values(u, shape) * e).sum(-1), (u * scatter_faces(e, shape)).flatten(1).sum(-1)
    )


def test_kron_solve_refuses_unsupported_operators():
    _, _, op, fac, _, _ = _setup((5, 5), 0)
    with pytest.raises(NotImplementedError, match=r"^KronSolve: linear operators only"):
        KronSolve(fac, LinearPDEOperator((2, 2), (1.0, 1.0), cubic=True), 1.0, 1.0)
    _, _, op3, fac3, _, _ = _setup((4, 4, 4), 0)
    with pytest.raises(NotImplementedError, match=r"^KronSolve: 1-D and 2-D grids only"):
        KronSolve(fac3, op3, 1.0, 1.0)
    KronSolve(fac, op, 1.0, 1.0)  # the supported case builds


def test_non_pd_gram_message_does_not_suggest_the_dtype_in_use():
    from bayesphys.gp_pde.operator import _chol

    bad = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="increase jitter") as err:
        _chol(bad, 0)
    assert "use float64" not in str(err.value)  # it is float64 already
    with pytest.raises(ValueError, match="or use float64"):
        _chol(bad.float(), 0)


def test_operator_orders_and_coefficients_are_checked():
    # orders and coefs of different lengths were accepted: an extra coefficient was ignored
    # silently (LinearPDEOperator((2,), (1.0, 5.0)) solved u'' = f), a missing one failed with
    # an IndexError inside the factor build; an order above 4 failed inside the kernel
    for orders, coefs in (((2,), (1.0, 5.0)), ((2, 2), (1.0,)), ((), ())):
        with pytest.raises(ValueError, match=r"^orders, coefs: expected one derivative order"):
            LinearPDEOperator(orders, coefs)
    with pytest.raises(ValueError, match=r"^orders: expected derivative orders in 0\.\.4"):
        LinearPDEOperator((5, 2), (1.0, 1.0))
    with pytest.raises(ValueError, match=r"^orders: expected an int >= 0"):
        LinearPDEOperator((-1, 2), (1.0, 1.0))
    with pytest.raises(TypeError, match=r"^orders: expected an int"):
        LinearPDEOperator((1.5, 2), (1.0, 1.0))
    with pytest.raises(ValueError, match=r"^coefs: expected a finite number"):
        LinearPDEOperator((1, 1), (float("nan"), 1.0))
    with pytest.raises(ValueError, match=r"^c0: expected a finite number"):
        LinearPDEOperator((2,), (1.0,), c0=float("inf"))
    op = LinearPDEOperator([2.0, 1], [1, 0.5], c0=-1)  # integral values, lists: normalised
    assert op.orders == (2, 1) and type(op.orders[0]) is int and op.coefs == (1.0, 0.5)
    assert op == LinearPDEOperator((2, 1), (1.0, 0.5), c0=-1.0)


def test_factor_lists_must_match_the_operator_dimension():
    # a 1-D factor list with a 2-D operator was solved as a 1-D problem (the second term of
    # the operator dropped without a word); the other way round failed with an IndexError
    ks, axes, op, fac, f, gb = _setup((5, 4), 0)
    op1 = LinearPDEOperator((2,), (1.0,))
    msg = r"^{}: expected {} \(one per dimension of the operator\), received {}"
    for call, name, want, got in (
        (lambda: build_factors(ks[:1], axes[:1], op), "kernels", 2, 1),
        (lambda: build_factors(ks, axes[:1], op), "axes", 2, 1),
        (lambda: build_factors(ks, axes, op1), "kernels", 1, 2),
        (lambda: KronSolve(fac[:1], op, 1.0, 1.0), "factors", 2, 1),
        (lambda: KronSolve(fac, op1, 1.0, 1.0), "factors", 1, 2),
        (lambda: DenseSolve(fac[:1], op), "factors", 2, 1),
        (lambda: apply_operator(fac[:1], op, f[0]), "factors", 2, 1),
        (lambda: PicardKronSolve(fac[:1], replace(op, cubic=True), 1.0, 1.0), "factors", 2, 1),
    ):
        with pytest.raises(ValueError, match=msg.format(name, want, got)):
            call()


@pytest.mark.parametrize("orders", [(2, 2), (1, 1)])
def test_sample_u_refuses_noise_of_the_wrong_length(orders):
    # noise longer than root_dim was accepted and its tail ignored (scatter_faces reads the
    # first N_b boundary entries only); a shorter one failed inside a reshape
    ks, axes, _, _, f, gb = _setup((5, 4), 0)
    op = LinearPDEOperator(orders, (1.0, 1.5))
    fac = build_factors(ks, axes, op, eigen=True, jitter=1e-4)
    kso = KronSolve(fac, op, 2.0, 10.0)
    n = kso.root_dim
    assert kso.sample_u(torch.zeros(3, n, dtype=F64)).shape == (3, 5, 4)
    for bad in (torch.zeros(3, n + 3, dtype=F64), torch.zeros(3, n - 1, dtype=F64)):
        with pytest.raises(
            ValueError, match=rf"^z: expected standard-normal noise of shape \[\*, {n}\]"
        ):
            kso.sample_u(bad)
    ds = DenseSolve(fac, op, "prior")
    ds.solve(f, gb, 2.0, 10.0)
    assert ds.sample_u(torch.zeros(2, 20, dtype=F64)).shape == (2, 20)
    with pytest.raises(ValueError, match=r"^z: expected standard-normal noise of shape \[\*, 20\]"):
        ds.sample_u(torch.zeros(4, 10, dtype=F64))


def test_test_variance_checks_its_maps():
    """One map per dimension of the right width: a short list was cut by zip (a 2-D solve
    gave 1-D variances) and a wrong width failed in a matmul naming nothing."""
    _, _, op, fac, f, gb = _setup((5, 4), 0)
    ks = KronSolve(fac, op, 1.0, 10.0)
    ks.solve(f, gb)
    with pytest.raises(ValueError, match="T: expected 2 matrices"):
        ks.test_variance([torch.randn(3, 5, dtype=F64)])
    with pytest.raises(ValueError, match=r"T\[1\]: expected a matrix \[p_1, 4\]"):
        ks.test_variance([torch.randn(3, 5, dtype=F64), torch.randn(3, 5, dtype=F64)])
    with pytest.raises(ValueError, match="chunk"):
        ks.test_variance([torch.randn(3, 5, dtype=F64), torch.randn(3, 4, dtype=F64)], chunk=0)


@pytest.mark.parametrize("orders", [(2, 2), (1, 1)])
def test_test_variance_in_row_chunks_equals_one_chunk_and_the_dense_diagonal(orders):
    """2-D variances are built ``chunk`` test rows at a time (the posterior's default 16 is
    below its 300-row test grids); every chunk size (1, ones that leave a last partial chunk,
    p - 1, p, p + 1) gives the variances of one whole chunk and the diagonal of the dense
    covariance of the solve's own draws, for the real and the complex (odd-order) eigenbasis."""
    shape, p = (6, 5), 7
    ks, axes, _, _, f, gb = _setup(shape, seed=4)
    op = LinearPDEOperator(orders, (3.0, 1.0))
    fac = build_factors(ks, axes, op, eigen=True, jitter=1e-4)
    assert bool(fac[0].lam.is_complex()) == (orders == (1, 1))
    kr = KronSolve(fac, op, 7.0, 50.0)
    kr.solve(f, gb)
    s = kr.sample_u(torch.eye(kr.root_dim, dtype=F64)).reshape(kr.root_dim, -1)
    g = torch.Generator().manual_seed(0)
    T = [
        torch.randn(p, shape[0], generator=g, dtype=F64),
        torch.randn(4, shape[1], generator=g, dtype=F64),
    ]
    Td = kron_dense(T)
    dense = ((Td @ (s.mT @ s)) * Td).sum(-1).reshape(p, 4)
    whole = kr.test_variance(T, chunk=p)
    torch.testing.assert_close(whole, dense, rtol=1e-11, atol=1e-14)
    for chunk in (1, 2, 3, p - 1, p + 1, 16):
        got = kr.test_variance(T, chunk=chunk)
        assert got.shape == (p, 4) and got.dtype == F64
        torch.testing.assert_close(got, whole, rtol=1e-13, atol=1e-15, msg=f"chunk={chunk}")


def test_objective_checks_the_shapes_it_used_to_broadcast():
    shape = (5, 6)
    _, _, op, fac, f, gb = _setup(shape, 0)
    u = torch.randn(shape, dtype=F64)
    zero = torch.zeros((), dtype=F64)
    want = objective(fac, op, u, f, gb, zero, zero, 200.0)
    # a flat source, as the solvers take it
    assert objective(fac, op, u, f.reshape(-1), gb, zero, zero, 200.0) == want
    bad = [
        ("g", dict(g=gb[:1])),  # one value was broadcast over every face
        ("f", dict(f=f[0])),  # one grid line was broadcast over the grid
        ("g", dict(g=gb[:-1])),
        ("u", dict(u=u.reshape(-1))),
        ("u", dict(u=u[:4])),
    ]
    for name, kw in bad:
        args = dict(u=u, f=f, g=gb) | kw
        with pytest.raises(ValueError, match=f"^{name}: expected"):
            objective(fac, op, args["u"], args["f"], args["g"], zero, zero, 200.0)


def test_face_values_are_the_first_and_last_slices_of_each_axis():
    """The boundary gather in face order: for each axis, the slice at index 0, then the slice
    at index n - 1 (corners in both faces), against explicit indexing."""
    u = torch.randn(2, 5, 4, dtype=F64)  # a batch of 2 fields on a 5 x 4 grid
    want = torch.cat([u[:, 0, :], u[:, -1, :], u[:, :, 0], u[:, :, -1]], dim=-1)
    torch.testing.assert_close(face_values(u, (5, 4)), want, rtol=0, atol=0)
    v = torch.randn(7, dtype=F64)
    torch.testing.assert_close(face_values(v, (7,)), v[[0, -1]], rtol=0, atol=0)


@pytest.mark.parametrize("weighting", ["identity", "prior"])
@pytest.mark.parametrize("shape", [(6,), (4, 3)])
def test_objective_is_the_dense_negative_log_joint(weighting, shape):
    """J(U, theta, tau) = -log N(vec U | 0, C) - lam_b log N(g | S U, tau_1^-1 I)
    - log N(0 | A U - f, tau_2^-1 W) with the 2 pi constants dropped, W = I or C, at taus and
    a boundary weight away from 1 (where a sign of a log tau or the weight lam_b would show),
    against dense float64 Gaussian log densities."""
    from scipy.stats import multivariate_normal

    _, _, op, fac, f, gb = _setup(shape, 4)
    g = torch.Generator().manual_seed(9)
    u = torch.randn(shape, generator=g, dtype=F64)
    log_tb, log_tp, lam_b = torch.tensor(0.7, dtype=F64), torch.tensor(-1.3, dtype=F64), 2.5
    got = objective(fac, op, u, f, gb, log_tb, log_tp, lam_b, weighting)
    L = kron_dense([fc.L for fc in fac])
    C = (L @ L.mT).numpy()
    m = C.shape[0]
    uv = u.reshape(-1).numpy()
    r = (DenseSolve(fac, op).A @ u.reshape(-1) - f.reshape(-1)).numpy()
    e = (face_values(u, shape) - gb).numpy()
    tb, tp = math.exp(0.7), math.exp(-1.3)
    W = C if weighting == "prior" else np.eye(m)
    nll = (
        -multivariate_normal(np.zeros(m), C).logpdf(uv)
        - lam_b * multivariate_normal(np.zeros(e.size), np.eye(e.size) / tb).logpdf(e)
        - multivariate_normal(np.zeros(m), W / tp).logpdf(r)
    )
    const = 0.5 * (2 * m + lam_b * e.size) * math.log(2 * math.pi)
    assert float(got) == pytest.approx(nll - const, rel=1e-9)


@pytest.mark.parametrize("cubic", [False, True])
def test_dense_draws_map_has_the_posterior_covariance(cubic):
    """sample_u is linear in the noise: its map z -> U applied to the identity is a square root
    T with T^T T = cov_u (exact, no Monte Carlo); for the cubic operator the factor of the
    converged Gauss-Newton solve is also the one linearise rebuilds at its solution."""
    ks, axes, op, _, f, gb = _setup((4, 3), 2, c0=-1.0)
    op = replace(op, cubic=cubic)
    fac = build_factors(ks, axes, op, eigen=True, jitter=1e-4)
    ds = DenseSolve(fac, op, "prior")
    u = ds.solve(0.5 * f, 0.5 * gb, 3.0, 20.0, iters=60, tol=1e-14)
    cov = ds.cov_u()
    T = ds.sample_u(torch.eye(12, dtype=F64))
    torch.testing.assert_close(T.mT @ T, cov, rtol=1e-10, atol=1e-12 * float(cov.abs().max()))
    p_solve = ds.chol_p @ ds.chol_p.mT
    ds.linearise(u, 3.0, 20.0)
    p_lin = ds.chol_p @ ds.chol_p.mT
    torch.testing.assert_close(p_lin, p_solve, rtol=1e-9, atol=1e-9 * float(p_solve.abs().max()))


@pytest.mark.parametrize("orders", [(2,), (2, 2), (1, 1)])
def test_kron_solve_without_boundary_term_matches_dense(orders):
    """gamma = 0 (accepted: the boundary term dropped) put an infinite 1/gamma on the
    capacitance's diagonal; with the complex eigenbasis of an odd order (advection) the
    solve, the draws and the test variances were NaN. They are now the diagonal precision's
    alone, as the dense solve gives."""
    shape = (6, 5)[: len(orders)]
    g = torch.Generator().manual_seed(7)
    axes = [torch.linspace(0, 1, n, dtype=F64) for n in shape]
    ks = [SpectralMixture1d(3, kind="stm", freq_scale=2.0) for _ in shape]
    op = LinearPDEOperator(orders, (1.0,) * len(orders))
    with torch.no_grad():
        fac = build_factors(ks, axes, op, eigen=True, jitter=1e-6)
        f = torch.randn(shape, generator=g, dtype=F64)
        gb = torch.randn(face_values(f, shape).shape, generator=g, dtype=F64)
        ds = DenseSolve(fac, op, "prior")
        ud = ds.solve(f, gb, 5.0, 0.0)
        kr = KronSolve(fac, op, 5.0, 0.0)
        uk = kr.solve(f, gb)
        torch.testing.assert_close(uk, ud, rtol=1e-9, atol=1e-10 * float(ud.abs().max()))
        s = kr.sample_u(torch.eye(kr.root_dim, dtype=F64)).reshape(kr.root_dim, -1)
        ref = ds.cov_u()
        torch.testing.assert_close(s.mT @ s, ref, rtol=1e-8, atol=1e-10 * float(ref.max()))
        T = [torch.randn(3, n, generator=g, dtype=F64) for n in shape]
        Td = kron_dense(T)
        torch.testing.assert_close(
            kr.test_variance(T).reshape(-1), torch.diagonal(Td @ ref @ Td.mT), rtol=1e-8, atol=1e-14
        )


def test_noise_and_fields_of_another_device_or_dtype_are_named():
    """``sample_u``'s noise on another device failed inside a triangular solve or a matrix
    product with torch's error, and so did ``objective`` with a float32 ``u`` (\"both inputs
    should have same dtype\"): each now names the argument. Float32 noise is still promoted
    by the solvers that did so."""
    ks, axes, op, fac, f, gb = _setup((8, 7), seed=2)
    kron = KronSolve(fac, op, 5.0, 40.0)
    kron.solve(f, gb)
    dense = DenseSolve(fac, op, "prior")
    dense.solve(f, gb, 5.0, 40.0)
    for solver, dim in ((kron, kron.root_dim), (dense, dense.m)):
        with pytest.raises(ValueError, match=r"^z: expected noise on the factors' device cpu"):
            solver.sample_u(torch.zeros(2, dim, device="meta"))
        z = torch.randn(2, dim, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(solver.sample_u(z.float()), solver.sample_u(z.float().double()))
    one = torch.tensor(0.0, dtype=F64)
    with pytest.raises(TypeError, match=r"^u: expected dtype torch.float64 \(the factors'\)"):
        objective(fac, op, f.float(), f, gb, one, one, 1.0, "prior")
    assert torch.isfinite(objective(fac, op, f, f.float(), gb, one, one, 1.0, "prior"))


def test_dense_solve_beyond_memory_is_refused_before_its_matrices(
    memory_limit, no_dense_allocation
):
    """DenseSolve forms [M, M] matrices (about eight): a 512 x 512 grid needs ~4 TB. Beyond
    the device's memory it is refused by name before the Kronecker products are formed."""
    _, _, op, fac, _, _ = _setup((12, 10), 0)
    memory_limit(500_000)  # M = 120: about 0.9 MB
    no_dense_allocation("bayesphys.gp_pde.dense_solve.kron_dense")
    with pytest.raises(
        MemoryError,
        match=r"^factors: the dense solve on a \(12, 10\) grid \(\[120, 120\] matrices, "
        r"torch\.float64\) would need .* use KronSolve",
    ):
        DenseSolve(fac, op, "prior")


def test_kron_apply_takes_none_as_the_identity_of_its_axis():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=g, dtype=F64), torch.randn(5, 2, generator=g, dtype=F64)
    u = torch.randn(6, 3, 2, generator=g, dtype=F64)  # a batch of 6 grids [3, 2]
    eye = torch.eye(2, dtype=F64)
    torch.testing.assert_close(kron_apply([a, None], u), kron_apply([a, eye], u))
    torch.testing.assert_close(
        kron_apply([None, b], u), kron_apply([torch.eye(3, dtype=F64), b], u)
    )
    assert torch.equal(kron_apply([None, None], u), u)


def test_objective_names_an_unknown_weighting():
    ks, axes, op, fac, f, gb = _setup((6,), seed=0)
    zero = torch.zeros((), dtype=F64)
    with pytest.raises(
        ValueError, match=r"^weighting: expected 'identity' or 'prior', received 'dense'$"
    ):
        objective(fac, op, torch.zeros(6, dtype=F64), f, gb, zero, zero, 1.0, "dense")


def test_set_diagonal_names_the_diagonal_it_refuses():
    ks, axes, op, fac, f, gb = _setup((6, 5), seed=0)
    ks_ = KronSolve(fac, op, 2.0, 30.0)
    with pytest.raises(
        ValueError,
        match=r"^dprec: expected a positive tensor of shape \(6, 5\), received shape \(5, 6\)$",
    ):
        ks_.set_diagonal(torch.ones(5, 6, dtype=F64))
    bad = torch.ones(6, 5, dtype=F64)
    bad[2, 3] = -0.5
    with pytest.raises(
        ValueError,
        match=r"^dprec: expected a positive tensor of shape \(6, 5\), received min -0\.5$",
    ):
        ks_.set_diagonal(bad)


def test_operator_objective_and_factor_lists_name_their_wrong_types():
    """``LinearPDEOperator(2, 1.0)`` failed with "'int' object is not iterable", ``cubic="no"``
    switched the cubic term on, ``for_equation(..., beta="a")`` raised float()'s error naming
    no argument; a factor list that is not a list failed with "object of type 'int' has no
    len()"; ``objective`` with a float log precision raised "'float' object has no attribute
    'exp'", a vector one broadcast into a vector objective, and a negative ``lam_b`` was used."""
    with pytest.raises(TypeError, match=r"^orders: expected a sequence .* received int 2"):
        LinearPDEOperator(2, (1.0,))
    with pytest.raises(TypeError, match=r"^coefs: expected a sequence .* received float 1\.0"):
        LinearPDEOperator((2,), 1.0)
    with pytest.raises(TypeError, match=r"^cubic: expected True or False, received str 'no'"):
        LinearPDEOperator((2,), (1.0,), cubic="no")
    with pytest.raises(TypeError, match=r"^beta: expected a real number, received str"):
        LinearPDEOperator.for_equation("advection", 2, beta="a")
    with pytest.raises(ValueError, match=r"^beta: expected a finite number"):
        LinearPDEOperator.for_equation("advection", 2, beta=float("nan"))
    assert LinearPDEOperator.for_equation("advection", 2, beta=3).coefs == (3.0, 1.0)
    ks, axes, op, fac, f, gb = _setup((5, 4), 0)
    for call, name in (
        (lambda: build_factors(ks[0], axes, op), "kernels"),
        (lambda: build_factors(ks, axes[0], op), "axes"),
        (lambda: DenseSolve(fac[0], op), "factors"),
        (lambda: KronSolve(3, op, 1.0, 1.0), "factors"),
    ):
        with pytest.raises(TypeError, match=rf"^{name}: expected a list with one entry"):
            call()
    u = torch.randn(5, 4, dtype=F64)
    zero = torch.zeros((), dtype=F64)
    want = objective(fac, op, u, f, gb, zero, zero, 200.0)
    assert torch.equal(objective(fac, op, u, f, gb, 0.0, 0, 200), want)
    with pytest.raises(ValueError, match=r"^log_tau_b: expected a number or a 0-d floating"):
        objective(fac, op, u, f, gb, torch.zeros(3, dtype=F64), zero, 200.0)
    with pytest.raises(ValueError, match=r"^log_tau_pde: expected a finite number"):
        objective(fac, op, u, f, gb, zero, float("nan"), 200.0)
    with pytest.raises(ValueError, match=r"^lam_b: expected a number >= 0\.0, received -1\.0"):
        objective(fac, op, u, f, gb, zero, zero, -1.0)
    # the kernels of a model, as an nn.ModuleList, are still a list of kernels
    m_ks = torch.nn.ModuleList(ks)
    assert torch.equal(build_factors(m_ks, axes, op)[0].L, build_factors(ks, axes, op)[0].L)


def test_dense_solve_of_differentiable_factors_does_not_warn():
    """Factors built from the kernels with autograd on (as ``build_factors`` gives them) made
    ``DenseSolve.solve`` warn "Converting a tensor with requires_grad=True to a scalar" from
    its stopping test, on every call; the field and its graph are as before."""
    import warnings

    k = SpectralMixture1d(3)
    x = torch.linspace(0, 1, 8, dtype=F64)
    op = LinearPDEOperator((2,), (1.0,))
    fac = build_factors([k], [x], op, jitter=1e-8)
    assert fac[0].L.requires_grad
    f, g = torch.sin(3 * x), torch.zeros(2, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        u = DenseSolve(fac, op).solve(f, g, 1.0, 1.0)
    assert u.requires_grad and u.shape == (8,)
    ref = DenseSolve(
        [
            replace(fc, **{n: getattr(fc, n).detach() for n in ("x", "C", "L", "Cop", "D")})
            for fc in fac
        ],
        op,
    )
    assert torch.equal(u.detach(), ref.solve(f, g, 1.0, 1.0))


def test_factor_builders_are_public_and_feed_the_solves():
    """``build_factors`` / ``with_eigen`` (and the ``Factor`` they return) come from
    ``bayesphys.gp_pde`` itself, as the solves that take their output do; the two routes
    (``eigen=True`` and ``with_eigen`` afterwards) give the same ``KronSolve``."""
    import bayesphys.gp_pde as gp
    from bayesphys.gp_pde import Factor, build_factors, with_eigen

    assert {"build_factors", "with_eigen", "Factor"} <= set(gp.__all__)
    op = LinearPDEOperator.for_equation("poisson", 1)
    x = torch.linspace(0, 1, 12, dtype=torch.float64)
    k = SpectralMixture1d(2)
    plain = build_factors([k], [x], op, jitter=1e-6)
    assert isinstance(plain[0], Factor) and plain[0].lam is None
    f = torch.sin(3 * x)
    g = torch.zeros(2, dtype=torch.float64)
    a = KronSolve(with_eigen(plain, op), op, 1.0, 1.0).solve(f, g)
    b = KronSolve(build_factors([k], [x], op, eigen=True, jitter=1e-6), op, 1.0, 1.0).solve(f, g)
    torch.testing.assert_close(a, b)


def test_build_factors_checks_its_axes_by_name():
    """The public builder reads each axis's first and last entries as its boundary faces: a
    shuffled axis put the boundary at interior points without a word, a repeated point made
    the Gram singular, a NaN failed inside torch, an empty axis built empty factors and a
    list of numbers failed with an AttributeError. A list is now an axis; float32 and integer
    axes are taken in the kernel's dtype."""
    from bayesphys.gp_pde import build_factors as build

    op = LinearPDEOperator.for_equation("poisson", 1)
    k = SpectralMixture1d(2)
    x = torch.linspace(0, 1, 6, dtype=F64)
    ref = build([k], [x], op)[0]
    for same in (x.tolist(), x.float().double(), x.float()):
        fac = build([k], [same], op)[0]
        assert fac.x.dtype == F64 and torch.allclose(fac.L, ref.L, atol=1e-6, rtol=0)
    shuffled = x[torch.tensor([0, 3, 1, 2, 5, 4])]
    cases = [
        (shuffled, ValueError, r"^axes\[0\]: expected strictly increasing coordinates"),
        (torch.cat([x, x[-1:]]), ValueError, r"^axes\[0\]: expected strictly increasing"),
        (x * float("nan"), ValueError, r"^axes\[0\]: expected finite values"),
        (x[:1], ValueError, r"^axes\[0\]: expected at least 2 grid points, received 1"),
        (x[None], ValueError, r"^axes\[0\]: expected 1 dimensions"),
        (x.to("meta"), ValueError, r"^axes\[0\]: expected a tensor on its kernel's device"),
        (x.to(torch.complex128), TypeError, r"^axes\[0\]: expected real coordinates"),
    ]
    for axis, err, match in cases:
        with pytest.raises(err, match=match):
            build([k], [axis], op)
