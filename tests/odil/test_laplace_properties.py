"""Property tests of the ODIL Laplace algebra on linear least-squares problems, where the
Gauss-Newton step is the exact minimiser and the Laplace covariance the exact inverse of
J^T J: every solver path (matrix-free CG, dense, sparse colouring + LU) against a dense
reference built column by column from the residual."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys.odil import DiscreteProblem, field_posterior, minimize, theta_covariance

F64 = torch.float64


def _problem(n: int, p: int, n_obs: int, seed: int):
    """A 1-d field u [n] and a parameter vector theta [p]: a random local two-point stencil
    plus random parameter couplings on every cell, observations of some cells, a prior on
    theta. Linear in (u, theta) with a full-column-rank Jacobian."""
    g = torch.Generator().manual_seed(seed)
    a = 1.0 + torch.rand(n, generator=g, dtype=F64)
    b = torch.randn(n - 1, generator=g, dtype=F64)
    c = torch.randn(n, p, generator=g, dtype=F64)
    f = torch.randn(n, generator=g, dtype=F64)
    obs = torch.randperm(n, generator=g)[:n_obs]
    y = torch.randn(n_obs, generator=g, dtype=F64)
    s_theta = 0.5 + torch.rand(p, generator=g, dtype=F64)

    def res(fields, params):
        u, th = fields["u"], params["theta"]
        pde = a * u + torch.cat([b * u[1:], u.new_zeros(1)]) + c @ th - f
        return {"pde": pde, "data": (u[obs] - y) / 0.3, "prior": th / s_theta}

    return DiscreteProblem({"u": (n,)}, {"theta": torch.zeros(p, dtype=F64)}, res)


def _dense_reference(prob: DiscreteProblem):
    """J from the residual at 0 and at each unit vector (exact for a linear residual), then
    the least-squares minimiser and inv(J^T J)."""
    x0 = torch.zeros(prob.n, dtype=F64)
    r0 = prob.residual(x0)
    eye = torch.eye(prob.n, dtype=F64)
    jac = torch.stack([prob.residual(e) - r0 for e in eye], 1)
    xstar = torch.linalg.lstsq(jac, -r0[:, None]).solution[:, 0]
    return xstar, torch.linalg.inv(jac.T @ jac)


@settings(max_examples=9, deadline=None)
@given(
    n=st.integers(3, 10),
    p=st.integers(1, 3),
    frac=st.floats(0.2, 1.0),
    seed=st.integers(0, 10_000),
)
def test_linear_problem_gn_step_and_laplace_covariances_are_exact(n, p, frac, seed):
    n_obs = max(1, int(frac * n))
    prob = _problem(n, p, n_obs, seed)
    xstar, cov = _dense_reference(prob)
    sl_u, sl_t = prob.slices["u"], prob.slices["theta"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # every inner solve converges
        for solver in ("cg", "dense", "sparse"):
            x, _ = minimize(prob, method="gn", steps=1, linear_solver=solver, cg_tol=1e-13)
            torch.testing.assert_close(x, xstar, rtol=1e-8, atol=1e-9)
        scale = float(cov.diagonal().max())
        for kw in ({}, {"dense": True}, {"sparse": True}):
            ct, _ = theta_covariance(prob, xstar, cg_tol=1e-13, **kw)
            torch.testing.assert_close(ct, cov[sl_t, sl_t], rtol=1e-7, atol=1e-10 * scale)
        post = field_posterior(prob, xstar, "u")
        torch.testing.assert_close(
            post.covariance.to_dense(), cov[sl_u, sl_u], rtol=1e-7, atol=1e-10 * scale
        )
        torch.testing.assert_close(post.mean, xstar[sl_u], rtol=0, atol=1e-12)


def _problem_2d(nx: int, ny: int, p: int, seed: int):
    """Two fields u, v [nx, ny] and theta [p]: a periodic five-point stencil on u coupled to
    v and to theta, a pointwise relation between v and u, observations of u, a prior on
    theta. Linear in (u, v, theta)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(5, nx, ny, generator=g, dtype=F64)
    c = torch.randn(nx, ny, p, generator=g, dtype=F64)

    def res(fields, params):
        u, v, th = fields["u"], fields["v"], params["theta"]
        lap = sum(torch.roll(u, s, a) for s in (1, -1) for a in (0, 1)) - 4 * u
        return {
            "pde": lap + w[0] * u + w[1] * v + c @ th - w[2],
            "rel": v - w[3] * u,
            "data": (u - w[4]) / 0.5,
            "prior": th,
        }

    shape = (nx, ny)
    return DiscreteProblem({"u": shape, "v": shape}, {"theta": torch.zeros(p, dtype=F64)}, res)


@settings(max_examples=6, deadline=None)
@given(
    nx=st.integers(1, 5),
    ny=st.integers(2, 5),
    p=st.integers(1, 3),
    lam=st.floats(1e-3, 1e2),
    seed=st.integers(0, 10_000),
)
def test_one_levenberg_marquardt_step_is_the_damped_normal_equations_solution(nx, ny, p, lam, seed):
    """On a linear residual every damped step decreases the loss, so the first LM step is
    accepted and is exactly x0 - (J^T J + lambda I)^{-1} J^T r(x0), on every solver path."""
    prob = _problem_2d(nx, ny, p, seed)
    x0 = torch.randn(prob.n, dtype=F64, generator=torch.Generator().manual_seed(seed + 1))
    r0 = prob.residual(x0)
    eye = torch.eye(prob.n, dtype=F64)
    jac = torch.stack([prob.residual(x0 + e) - r0 for e in eye], 1)  # exact: linear
    want = x0 - torch.linalg.solve(jac.T @ jac + lam * eye, jac.T @ r0)
    for solver in ("cg", "dense", "sparse"):
        x, fit = minimize(
            prob, x0, method="lm", damping=lam, steps=1, linear_solver=solver, cg_tol=1e-14
        )
        assert fit.steps == 1 and len(fit.loss_history) == 2, (solver, fit.message)
        torch.testing.assert_close(x, want, rtol=1e-9, atol=1e-10, msg=solver)


def test_dense_gauss_newton_beyond_memory_is_refused_before_the_jacobian(
    memory_limit, no_dense_allocation
):
    """The dense paths hold the Jacobian [m, n] (and forward mode's tangents) and J^T J
    [n, n]: a 64^3 glioma volume (262k unknowns) needs ~2 TB. Beyond the device's memory
    each is refused, naming the argument that chose it, before the Jacobian is formed."""
    from bayesphys.odil import dense_gn_matrix

    prob = _problem(40, 2, 10, seed=0)  # n = 42 unknowns, m = 52 residuals: about 63 kB
    x = torch.zeros(prob.n, dtype=F64)
    memory_limit(20_000)
    no_dense_allocation("bayesphys.odil.laplace.dense_jacobian")
    no_dense_allocation("bayesphys.odil._damped_step.dense_jacobian")
    with pytest.raises(MemoryError, match=r"^dense_max: a dense Jacobian \[52, 42\] .* below"):
        field_posterior(prob, x, "u", dense_max=10**6)
    with pytest.raises(MemoryError, match=r"^dense: a dense Jacobian \[52, 42\] .* dense=False"):
        theta_covariance(prob, x, dense=True)
    with pytest.raises(MemoryError, match=r"^x: a dense Jacobian \[52, 42\] .* gn_matvec"):
        dense_gn_matrix(prob, x)
    with pytest.raises(MemoryError, match=r"^linear_solver: .* linear_solver='cg'"):
        minimize(prob, x, method="gn", linear_solver="dense", progress=False)
