"""GPPDESolver.field_posterior: the joint law of the field on the collocation grid.

Before it, the inverse-problem example read the dense covariance through the private
``model._solver``; ``posterior()`` keeps marginal variances only (its ``log_prob`` raises).
"""

import math

import pytest
import torch

from bayesphys.gp_pde import GPPDESolver
from bayesphys.gp_pde._kron import face_values, kron_dense
from bayesphys.gp_pde.dense_solve import DenseSolve
from bayesphys.gp_pde.operator import detach_factors

F64 = torch.float64


def _dense_reference(m: GPPDESolver):
    """Sigma_U = (C^-1 + tau2 A^T C^-1 A + gamma S^T S)^-1 and its mean, formed densely
    from the model's factors (linear equation, prior metric)."""
    fac = detach_factors(m._factors())
    shape = m.shape
    n = math.prod(shape)
    C = kron_dense([fc.C for fc in fac])
    Ci = torch.linalg.inv(C)
    A = DenseSolve(fac, m.op, "prior").A
    S = face_values(torch.eye(n, dtype=F64).reshape(n, *shape), shape).mT
    tau2 = float(m.log_tau_pde.detach().exp())
    gamma = m.config["lam_b"] * float(m.log_tau_b.detach().exp())
    P = Ci + tau2 * A.mT @ Ci @ A + gamma * S.mT @ S
    cov = torch.linalg.inv(P)
    mean = cov @ (tau2 * A.mT @ Ci @ m.f.reshape(-1) + gamma * S.mT @ m.g)
    return mean, 0.5 * (cov + cov.mT)


@pytest.mark.parametrize("problem", ["poisson2d-low", "poisson1d-low"])
def test_field_posterior_matches_the_dense_reference(problem):
    kw = dict(n_col=9) if problem.startswith("poisson2d") else dict(n_col=24)
    m = GPPDESolver(problem, num_mixtures=2, weighting="prior", seed=0, **kw)
    m.fit(steps=3, progress=False)
    u_before = m.u.clone()
    post = m.field_posterior()
    mean, cov = _dense_reference(m)
    got = post.covariance.to_dense()
    assert post.event_shape == torch.Size(m.shape)
    assert float((got - cov).abs().max() / cov.abs().max()) < 1e-5  # C^-1 formed explicitly
    assert float((post.mean.reshape(-1) - mean).norm() / mean.norm()) < 1e-5
    assert torch.equal(got, got.mT)
    # a proper joint law: draws, log_prob, and the model left as it was
    draws = post.sample((3,), generator=torch.Generator().manual_seed(0))
    assert draws.shape == (3, *m.shape)
    assert bool(torch.isfinite(post.log_prob(draws)).all())
    assert torch.equal(m.u, u_before)
    # the marginals agree with posterior()'s on the collocation grid (up to its jitter)
    var = m.posterior(m.axes).variance
    assert float((post.variance - var).abs().max() / var.max()) < 0.05


def test_field_posterior_dense_path_is_the_solvers_covariance():
    m = GPPDESolver(
        "poisson1d-low", n_col=20, num_mixtures=2, weighting="identity", jitter=1e-10, seed=0
    )
    m.fit(steps=3, progress=False)
    post = m.field_posterior()
    with torch.no_grad():
        fac = detach_factors(m._factors())
        ds = DenseSolve(fac, m.op, "identity")
        tau2 = float(m.log_tau_pde.detach().exp())
        gamma = m.config["lam_b"] * float(m.log_tau_b.detach().exp())
        ds.linearise(m.u, tau2, gamma)
        cov = ds.cov_u()
    assert torch.allclose(post.covariance.to_dense(), 0.5 * (cov + cov.mT), rtol=0, atol=0)
    assert torch.equal(post.mean, m.u)


def test_field_posterior_refuses_a_grid_beyond_the_dense_limit():
    m = GPPDESolver("poisson2d-low", n_col=80, num_mixtures=1, seed=0)  # 6400 points
    with pytest.raises(
        ValueError, match=r"field_posterior: the grid has 6400 points.*posterior\(\)"
    ):
        m.field_posterior()


def test_field_posterior_gauss_newton_is_formed_densely(monkeypatch):
    """Gauss-Newton: the exact-Jacobian covariance R H^-1 R^T equals the perturb-and-solve
    one (S^T S, S = sample_u(I) solved to 1e-12), and is formed without sample_u: its 2 M + N_b
    sequential PCG solves took 20 s on a 12 x 12 grid and about a minute on 24 x 24."""
    from bayesphys.gp_pde.gauss_newton import GaussNewtonKronSolve

    m = GPPDESolver(
        "allencahn2d-low",
        n_col=8,
        num_mixtures=1,
        weighting="prior",
        nonlinear_solver="gauss-newton",
        seed=0,
    )
    m.fit(steps=2, progress=False)
    with torch.no_grad():
        solver, run = m._solver(detach_factors(m._factors()), reuse=True)
        run()
        k, n = solver.root_dim, math.prod(m.shape)
        s = solver.sample_u(torch.eye(k, dtype=F64), tol=1e-12).reshape(k, n)
    ref = s.mT @ s

    def no_pcg(self, z, **kw):
        raise AssertionError("sample_u called: one PCG solve per unit vector")

    monkeypatch.setattr(GaussNewtonKronSolve, "sample_u", no_pcg)
    got = m.field_posterior().covariance.to_dense()
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-9


def test_field_posterior_unit_noise_in_blocks(monkeypatch):
    """The Kronecker solvers' unit noise comes in [chunk, root_dim] blocks (no [root_dim,
    root_dim] identity: 317 MB at the 6000-point limit, rebuilt for every block), and the
    blocks together are the identity."""
    from bayesphys.gp_pde.posterior import grid_field_posterior

    k, n = 7, 3
    a = torch.randn(k, n, dtype=F64, generator=torch.Generator().manual_seed(1))

    class Fake:
        root_dim = k

        def sample_u(self, z):
            return z @ a

    eyes = []
    real_eye = torch.eye

    def eye(size, *args, **kw):
        eyes.append(size)
        return real_eye(size, *args, **kw)

    monkeypatch.setattr(torch, "eye", eye)
    post = grid_field_posterior(torch.zeros(n, dtype=F64), Fake(), chunk=3)
    monkeypatch.undo()
    assert all(size <= 3 for size in eyes), eyes
    torch.testing.assert_close(post.covariance.to_dense(), a.mT @ a, rtol=1e-12, atol=1e-12)


def test_field_posterior_refuses_a_covariance_beyond_the_memory(memory_limit, monkeypatch):
    """Gauss-Newton's assembly holds about six dense [M, M] arrays (1.7 GB at 6000 points)
    and nothing checked them against the memory before the solve."""
    m = GPPDESolver("poisson2d-low", n_col=12, num_mixtures=1, seed=0)
    memory_limit(6 * 144 * 144 * 8 - 1)
    monkeypatch.setattr(
        GPPDESolver, "_solver", lambda *a, **k: pytest.fail("solved before the memory check")
    )
    with pytest.raises(MemoryError, match=r"^field_posterior: the dense field covariance"):
        m.field_posterior()
