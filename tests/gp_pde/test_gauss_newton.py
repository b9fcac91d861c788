"""Matrix-free Gauss-Newton (PCG, Kronecker-preconditioned) for the Allen-Cahn field."""

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesphys._linalg import pcg
from bayesphys.gp_pde import DenseSolve, GaussNewtonKronSolve, GPPDESolver, objective
from bayesphys.gp_pde._kron import face_values, kron_dense
from bayesphys.gp_pde.operator import build_factors

from .test_solve import _setup

F64 = torch.float64


def _cubic_setup(shape, seed, scale=0.3, jitter=1e-4):
    ks, axes, op, _, f, gb = _setup(shape, seed=seed, c0=-1.0)
    op = replace(op, cubic=True)
    fac = build_factors(ks, axes, op, eigen=True, jitter=jitter)
    return fac, op, scale * f, scale * gb


def _dense_hessian_w(fac, op, u, tau2, gamma):
    """H_w = R^T (C^-1 + tau2 J^T C^-1 J + gamma S^T S) R with J = A + diag(3U^2), dense."""
    shape = tuple(u.shape)
    m = math.prod(shape)
    R = kron_dense([fc.R for fc in fac])
    C = kron_dense([fc.C for fc in fac])
    Ci = torch.linalg.inv(C)
    A = DenseSolve(fac, replace(op, cubic=False), "prior").A
    J = A + torch.diag(3 * u.reshape(-1) ** 2)
    eye = torch.eye(m, dtype=F64)
    S = face_values(eye.reshape(m, *shape), shape).mT
    HU = Ci + tau2 * J.mT @ Ci @ J + gamma * S.mT @ S
    return R.mT @ HU @ R, R


def test_gauss_newton_matches_dense_solve_and_is_stationary():
    shape = (12, 12)
    fac, op, f, gb = _cubic_setup(shape, seed=5)
    tau2, gamma = 5.0, 40.0
    gn = GaussNewtonKronSolve(fac, op, tau2, gamma, tol=1e-13, cg_tol_min=1e-13, cg_maxiter=500)
    u = gn.solve(f, gb)
    assert gn.converged and gn.iterations < 20
    ud = DenseSolve(fac, op, "prior").solve(f, gb, tau2, gamma, iters=50, tol=1e-14)
    assert float((u - ud).norm() / ud.norm()) < 1e-8
    # stationary point of the model's own objective (solve.objective, prior metric)
    uu = u.clone().requires_grad_(True)
    lam_b = 1.0
    J = objective(
        fac,
        op,
        uu,
        f,
        gb,
        torch.tensor(math.log(gamma), dtype=F64),
        torch.tensor(math.log(tau2), dtype=F64),
        lam_b,
        "prior",
    )
    (grad,) = torch.autograd.grad(J, uu)
    Ci = torch.linalg.inv(kron_dense([fc.C for fc in fac]))
    assert float(grad.norm()) < 1e-6 * float((Ci @ u.reshape(-1)).norm())  # round-off of C^-1


def test_gauss_newton_objective_is_the_model_objective_and_decreases():
    shape = (10, 9)
    fac, op, f, gb = _cubic_setup(shape, seed=8, scale=1.5)
    tau2, gamma = 20.0, 300.0
    gn = GaussNewtonKronSolve(fac, op, tau2, gamma, tol=1e-12, cg_maxiter=400)
    u = gn.solve(f, gb)
    obj = gn.objective
    assert gn.converged and len(obj) >= 3
    assert all(b <= a * (1 + 1e-14) for a, b in zip(obj, obj[1:]))  # monotone (line search)
    assert gn.grad_norms[-1] < 1e-6 * gn.grad_norms[0]
    assert gn.cg_iters == sum(gn.cg_history) > 0

    # differences of J(U) equal those of solve.objective (same objective up to constants)
    def model_obj(v):
        return float(
            objective(
                fac,
                op,
                v,
                f,
                gb,
                torch.tensor(math.log(gamma), dtype=F64),
                torch.tensor(math.log(tau2), dtype=F64),
                1.0,
                "prior",
            )
        )

    u0 = torch.zeros(shape, dtype=F64)
    gn2 = GaussNewtonKronSolve(fac, op, tau2, gamma, max_iter=1)
    gn2.solve(f, gb, u0=u + 0.01)
    j_a = gn2.objective[0]
    gn2.solve(f, gb, u0=u0 + 1e-300)  # tiny, but not the "no start" zero field
    j_b = gn2.objective[0]
    assert math.isclose(j_a - j_b, model_obj(u + 0.01) - model_obj(u0), rel_tol=1e-9)


@settings(max_examples=10, deadline=None)
@given(
    shape=st.one_of(st.tuples(st.integers(5, 12)), st.tuples(st.integers(3, 7), st.integers(3, 7))),
    seed=st.integers(0, 10_000),
    tau2=st.floats(0.5, 50.0),
    gamma=st.floats(1.0, 1e3),
    amp=st.floats(0.0, 2.0),
)
def test_pcg_solves_the_gauss_newton_system(shape, seed, tau2, gamma, amp):
    fac, op, f, gb = _cubic_setup(shape, seed=seed)
    gn = GaussNewtonKronSolve(fac, op, tau2, gamma)
    g = torch.Generator().manual_seed(seed + 1)
    u = amp * torch.randn(shape, generator=g, dtype=F64)
    d = 3 * u * u
    Hd, _ = _dense_hessian_w(fac, op, u, tau2, gamma)
    v = torch.randn(shape, generator=g, dtype=F64)
    hv = gn.hessian_matvec(v, d)
    assert torch.allclose(
        hv.reshape(-1), Hd @ v.reshape(-1), rtol=1e-9, atol=1e-9 * float(hv.norm())
    )
    # exact diagonal of G^T G (the "diag" preconditioner): H = I + tau2 G^T G + gamma B^T B
    m = math.prod(shape)
    S = face_values(torch.eye(m, dtype=F64).reshape(m, *shape), shape).mT
    _, R = _dense_hessian_w(fac, op, u, tau2, gamma)
    SR = S @ R
    gtg = (Hd - torch.eye(m, dtype=F64) - gamma * SR.mT @ SR) / tau2
    assert torch.allclose(
        gn.gtg_diagonal(d).reshape(-1),
        gtg.diagonal(),
        rtol=1e-7,
        atol=1e-9 * float(gtg.abs().max()),
    )
    b = torch.randn(shape, generator=g, dtype=F64)
    xd = torch.linalg.solve(Hd, b.reshape(-1))
    # forward error of a relative residual 1e-12 is at most cond(H) * 1e-12 (plus the dense
    # solve's own cond(H) * eps): a fixed 1e-8 failed on ill-conditioned draws
    err_tol = 1e-8 + 2.0 * float(torch.linalg.cond(Hd)) * (1e-12 + 1e-15)
    for pre in (gn._preconditioner(float(d.mean())), gn._cg_preconditioner(d)):
        x, it, res = pcg(
            lambda z: gn.hessian_matvec(z, d),
            b,
            precond=pre.precision_solve,
            tol=1e-12,
            maxiter=2000,
        )
        assert res <= 1e-12
        assert float((x.reshape(-1) - xd).norm() / xd.norm()) < err_tol
        if amp == 0.0:  # constant 3U^2: both preconditioners are exact, one iteration
            assert it <= 2


def test_posterior_draws_have_the_linearised_covariance():
    shape = (5, 4)
    fac, op, f, gb = _cubic_setup(shape, seed=2, scale=1.0)
    tau2, gamma = 3.0, 20.0
    gn = GaussNewtonKronSolve(fac, op, tau2, gamma, tol=1e-13)
    u = gn.solve(f, gb)
    Hd, R = _dense_hessian_w(fac, op, u, tau2, gamma)
    cov = R @ torch.linalg.inv(Hd) @ R.mT
    eye = torch.eye(gn.root_dim, dtype=F64)
    T = gn.sample_u(eye, tol=1e-13).reshape(gn.root_dim, -1)  # the linear map z -> U draw
    assert torch.allclose(T.mT @ T, cov, rtol=1e-7, atol=1e-9 * float(cov.abs().max()))


def test_model_gauss_newton_fit_and_posterior(tmp_path):
    m = GPPDESolver(
        "allencahn2d-low",
        num_mixtures=6,
        jitter=1e-10,
        seed=0,
        nonlinear_solver="gauss-newton",
        solver_options=dict(max_iter=5, cg_maxiter=200),
    )
    res = m.fit(steps=60, progress=False, eval_every=59)
    assert m.history["rel_l2"][0] > 2 * res.extra["rel_l2"]
    assert res.extra["rel_l2"] < 0.1
    stats = m.solve_field()
    assert stats["solver"] == "GaussNewtonKronSolve" and stats["cg_iters"] >= 0
    post = m.posterior()
    assert bool(torch.isfinite(post.variance).all()) and bool((post.variance > 0).all())
    assert post.sample((2,)).shape[0] == 2
    m2 = GPPDESolver.load(m.save(tmp_path / "gn.pt"))
    assert m2.config["nonlinear_solver"] == "gauss-newton"
    assert m2.config["solver_options"] == dict(max_iter=5, cg_maxiter=200)
    assert torch.equal(m2.u, m.u)


def test_gauss_newton_save_load_posterior_is_exact(tmp_path):
    # capped CG: the field is not the exact minimiser, so re-solving it after load() moved it
    # (2.4e-5 here) and the loaded model's posterior differed from the saved model's
    m = GPPDESolver(
        "allencahn2d-low",
        n_col=12,
        num_mixtures=3,
        seed=0,
        nonlinear_solver="gauss-newton",
        solver_options=dict(max_iter=2, cg_maxiter=20),
    )
    m.fit(steps=3, progress=False)
    p1 = m.posterior()
    m2 = GPPDESolver.load(m.save(tmp_path / "gn.pt"))
    p2 = m2.posterior()
    assert torch.equal(m2.u, m.u)
    assert torch.equal(p1.mean, p2.mean) and torch.equal(p1.variance, p2.variance)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(p1.sample((2,), generator=g1), p2.sample((2,), generator=g2))


class _CountingGN(GaussNewtonKronSolve):
    """Counts the objective evaluations (one per iterate plus one per backtracking trial)."""

    evaluations = 0

    def _value(self, w, rho, e):
        self.evaluations += 1
        return super()._value(w, rho, e)


@pytest.mark.parametrize(
    "shape, seed, scale, tau2, gamma, pert, opts",
    [
        ((10, 9), 0, 1.0, 1e3, 1e4, 1e-6, {}),
        ((9, 9), 0, 0.5, 1e6, 1e7, 1e-6, {}),
        ((12, 12), 2, 1.0, 1e4, 1e5, 1e-6, dict(tol=1e-13, cg_tol_min=1e-13)),
        ((12, 12), 0, 1.0, 1e4, 1e5, 0.0, {}),  # started at the (dense) solution
    ],
)
def test_gauss_newton_near_the_optimum_converges_promptly_to_it(
    shape, seed, scale, tau2, gamma, pert, opts
):
    # started ~1e-6 from the optimum, the predicted decrease g^T p falls below the round-off of
    # J after one step, so the Armijo test compared round-off: it rejected full steps that were
    # 1e3x closer to the optimum, backtracked (up to 43 evaluations) and stopped on a tiny
    # damped step with the error at 3e-10..1.5e-9 instead of 1e-12
    fac, op, f, gb = _cubic_setup(shape, seed=seed, scale=scale)
    ud = DenseSolve(fac, op, "prior").solve(f, gb, tau2, gamma, iters=50, tol=1e-14)
    g = torch.Generator().manual_seed(7)
    start = ud * (1 + pert * torch.randn(shape, generator=g, dtype=F64))
    gn = _CountingGN(fac, op, tau2, gamma, **opts)
    u = gn.solve(f, gb, u0=start)
    assert gn.converged and gn.iterations <= 5
    assert gn.evaluations <= gn.iterations + 2  # (almost) no backtracking
    assert float((u - ud).norm() / ud.norm()) < 1e-11
    assert all(b <= a * (1 + 1e-14) for a, b in zip(gn.objective, gn.objective[1:]))


def test_gauss_newton_bad_input():
    fac, op, f, gb = _cubic_setup((6, 5), seed=1)
    with pytest.raises(ValueError, match="op"):
        GaussNewtonKronSolve(fac, replace(op, cubic=False), 1.0, 1.0)
    with pytest.raises(ValueError, match="tau2"):
        GaussNewtonKronSolve(fac, op, float("nan"), 1.0)
    with pytest.raises(ValueError, match="gamma"):
        GaussNewtonKronSolve(fac, op, 1.0, -2.0)
    no_eig = [replace(fc, lam=None) for fc in fac]
    with pytest.raises(ValueError, match="eigen"):
        GaussNewtonKronSolve(no_eig, op, 1.0, 1.0)
    gn = GaussNewtonKronSolve(fac, op, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"^f: expected a finite grid tensor of shape"):
        gn.solve(f[:-1], gb)
    bad = gb.clone()
    bad[0] = float("nan")
    with pytest.raises(ValueError, match=r"^g: expected finite values"):
        gn.solve(f, bad)
    with pytest.raises(ValueError, match="sample_u"):
        GaussNewtonKronSolve(fac, op, 1.0, 1.0).sample_u(torch.zeros(3, gn.root_dim, dtype=F64))
    gn.solve(f, gb)
    with pytest.raises(ValueError, match=r"^z: expected standard-normal noise of shape"):
        gn.sample_u(torch.zeros(2, gn.root_dim + 2, dtype=F64))  # the tail was ignored
    with pytest.raises(ValueError, match="precond"):
        GaussNewtonKronSolve(fac, op, 1.0, 1.0, precond="ilu")
    with pytest.raises(ValueError, match="nonlinear_solver"):
        GPPDESolver("allencahn2d-low", nonlinear_solver="newton")


@pytest.mark.parametrize("start, cg_maxiter", [(10.0, 2), (30.0, 5)])
def test_gauss_newton_failed_line_search_is_not_converged(start, cg_maxiter):
    # one backtrack and a crude CG direction from a far start: the full step raises the
    # objective, the search gives up with the gradient far from zero, and the solve was
    # reported converged (the branch meant for the round-off floor took every failure)
    fac, op, f, gb = _cubic_setup((9,), seed=3, scale=1.0)
    gn = GaussNewtonKronSolve(
        fac, op, 7.0, 50.0, max_backtrack=1, cg_maxiter=cg_maxiter, precond="shift"
    )
    u0 = torch.full((9,), start, dtype=F64)
    gn.solve(f, gb, u0=u0)
    assert len(gn.step_norms) < gn.iterations  # the last step was rejected
    assert gn.grad_norms[-1] > 1e-3 * gn.grad_norms[0]  # far from stationary
    assert not gn.converged
    # the default search (30 halvings) from the same start does converge, to a stationary point
    ok = GaussNewtonKronSolve(fac, op, 7.0, 50.0, cg_maxiter=cg_maxiter, max_iter=200)
    ok.solve(f, gb, u0=u0)
    assert ok.converged and ok.grad_norms[-1] < 1e-8 * ok.grad_norms[0]


def test_gauss_newton_stop_reason_names_the_test_that_ended_the_solve():
    """``converged`` is met by relative tests (``gtol`` against the first gradient of the
    solve): ``stop_reason`` says which test and the numbers, so a solve from a poor start
    that stopped on the relative gradient test is not read as an absolute one."""
    fac, op, f, gb = _cubic_setup((9,), seed=3, scale=1.0)
    u0 = torch.full((9,), 30.0, dtype=F64)
    # gtol=0.5: met after a few steps with the objective still far from its minimum
    rel = GaussNewtonKronSolve(fac, op, 7.0, 50.0, gtol=0.5, tol=0.0)
    rel.solve(f, gb, u0=u0)
    ok = GaussNewtonKronSolve(fac, op, 7.0, 50.0, max_iter=200)
    ok.solve(f, gb, u0=u0)
    assert rel.converged and ok.converged
    assert rel.objective[-1] > 10 * ok.objective[-1]  # "converged", objective still large
    assert "first gradient norm of this solve" in rel.stop_reason
    assert "not an absolute" in rel.stop_reason
    assert f"{rel.grad_norms[-1]:.2e}" in rel.stop_reason
    assert ok.stop_reason.startswith("converged")
    # out of iterations: not converged, and the reason says so
    cut = GaussNewtonKronSolve(fac, op, 7.0, 50.0, max_iter=1)
    cut.solve(f, gb, u0=u0)
    assert not cut.converged and "max_iter=1 steps reached" in cut.stop_reason
    # a failed line search (see the test above): not converged, the search named
    bad = GaussNewtonKronSolve(fac, op, 7.0, 50.0, max_backtrack=1, cg_maxiter=2, precond="shift")
    bad.solve(f, gb, u0=torch.full((9,), 10.0, dtype=F64))
    assert not bad.converged and "line search" in bad.stop_reason


def test_sample_u_names_noise_of_another_dtype_or_device():
    """Gauss-Newton refuses f, g and u0 of another dtype by name; float32 noise reached its
    Kronecker products and failed with torch's 'both inputs should have same dtype'. Noise of
    another dtype or device is now named as those are."""
    fac, op, f, gb = _cubic_setup((8, 7), seed=3)
    gn = GaussNewtonKronSolve(fac, op, 5.0, 40.0, tol=1e-10, cg_maxiter=300)
    gn.solve(f, gb)
    z = torch.randn(2, gn.root_dim, generator=torch.Generator().manual_seed(1), dtype=F64)
    with pytest.raises(TypeError, match=r"^z: expected dtype torch.float64 \(the factors'\)"):
        gn.sample_u(z.float())
    with pytest.raises(ValueError, match=r"^z: expected noise on the factors' device cpu"):
        gn.sample_u(z.to("meta"))
    assert gn.sample_u(z).shape == (2, 8, 7)


def test_gauss_newton_refuses_odd_orders_and_a_non_finite_shift():
    fac, op, f, gb = _cubic_setup((6, 5), seed=1)
    with pytest.raises(ValueError, match=r"^op: GaussNewtonKronSolve needs even derivative orders"):
        GaussNewtonKronSolve(fac, replace(op, orders=(1, 2)), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"^shift: expected a finite"):
        GaussNewtonKronSolve(fac, op, 1.0, 1.0, shift=float("nan"))
    with pytest.raises(ValueError, match=r"^shift: expected a finite"):
        GPPDESolver(
            "allencahn2d-low", nonlinear_solver="gauss-newton", solver_options=dict(shift=math.inf)
        )
    # a given shift only changes the preconditioner: the same minimiser
    a = GaussNewtonKronSolve(fac, op, 5.0, 40.0, precond="shift", shift=0.0, tol=1e-13)
    b = GaussNewtonKronSolve(fac, op, 5.0, 40.0, precond="shift", tol=1e-13)
    ua, ub = a.solve(f, gb), b.solve(f, gb)
    assert a.converged and b.converged and a.shift == 0.0
    assert float((ua - ub).norm() / ub.norm()) < 1e-9


def test_gauss_newton_a_non_finite_gradient_is_a_numerical_failure():
    """A start whose cube overflows (u0 = 1e120) has no finite gradient: the solve fails as
    a NumericalFailure (a divergence in a fit), not with a NaN field."""
    from bayesphys.gp_pde._errors import NumericalFailure

    fac, op, f, gb = _cubic_setup((9,), seed=3, scale=1.0)
    gn = GaussNewtonKronSolve(fac, op, 7.0, 50.0)
    with pytest.raises(NumericalFailure, match=r"^GaussNewtonKronSolve: non-finite gradient$"):
        gn.solve(f, gb, u0=torch.full((9,), 1e120, dtype=F64))
    assert not gn.converged and gn.stop_reason == "diverged: non-finite gradient"


@pytest.mark.parametrize("shape", [(9,), (8, 7)])
def test_gauss_newton_started_at_the_minimiser_stops_at_the_round_off_floor(shape):
    """With the step and gradient tests off (tol = gtol = 0) a solve started at the dense
    minimiser ends when the gradient, at its round-off floor, no longer decreases: converged,
    and the reason names that floor."""
    fac, op, f, gb = _cubic_setup(shape, seed=3, scale=1.0)
    ud = DenseSolve(fac, op, "prior").solve(f, gb, 7.0, 50.0, iters=50, tol=1e-14)
    gn = GaussNewtonKronSolve(fac, op, 7.0, 50.0, tol=0.0, gtol=0.0, max_iter=20)
    u = gn.solve(f, gb, u0=ud)
    assert gn.converged and gn.iterations < 20
    assert gn.stop_reason.startswith(
        f"converged: gradient norm {gn.grad_norms[-1]:.2e} at its round-off floor"
    )
    assert gn.grad_norms[-1] >= gn.grad_norms[-2]
    assert float((u - ud).norm() / ud.norm()) < 1e-11


def test_gauss_newton_steps_down_the_preconditioned_gradient_where_cg_made_no_progress(
    monkeypatch,
):
    """A CG solve that returns no descent direction (a breakdown) does not stall the solve:
    the step is the preconditioned gradient's, and the solve still reaches the minimiser."""
    import bayesphys.gp_pde.gauss_newton as gnm

    real, stalled = gnm.pcg, []

    def no_progress(*args, **kwargs):
        delta, it, info = real(*args, **kwargs)
        stalled.append(it)
        return torch.zeros_like(delta), 0, info

    fac, op, f, gb = _cubic_setup((9,), seed=3, scale=1.0)
    ud = DenseSolve(fac, op, "prior").solve(f, gb, 7.0, 50.0, iters=50, tol=1e-14)
    monkeypatch.setattr(gnm, "pcg", no_progress)
    gn = GaussNewtonKronSolve(fac, op, 7.0, 50.0, max_iter=200)
    u = gn.solve(f, gb)
    assert stalled and gn.cg_iters == 0 and gn.converged
    assert all(b <= a * (1 + 1e-14) for a, b in zip(gn.objective, gn.objective[1:]))
    assert float((u - ud).norm() / ud.norm()) < 1e-8


def test_the_structured_nonlinear_solvers_refuse_a_grid_their_preconditioner_cannot_take():
    """Their linear pieces are KronSolves (1-D and 2-D grids only): a 3-D grid was accepted
    and failed at the first solve with KronSolve's message, naming neither solver."""
    from bayesphys.gp_pde import PicardKronSolve

    fac, op, f, gb = _cubic_setup((4, 4, 3), seed=1)
    for cls in (GaussNewtonKronSolve, PicardKronSolve):
        with pytest.raises(
            NotImplementedError,
            match=rf"^{cls.__name__}: 1-D and 2-D grids only \(its linear solves are "
            r"KronSolves\), received a 3-D grid$",
        ):
            cls(fac, op, 1.0, 1.0)
