"""Cost review (2026-12-07): work and memory the GP-PDE solver spent on nothing.

- ``posterior(x)`` formed, per axis, the joint prior covariance of the test and collocation
  points ``[p + n, p + n]`` (a ``[p, p]`` kernel Gram) and its eigendecomposition, which only
  the draws read: on a fine 1-D grid (p = 2000 over the 400-point ``poisson1d-sin100`` grid)
  ``posterior(x).interval(0.95)`` took 9.3-10.4 CPU-s, now 0.74-0.78 (peak rise 225 -> 95 MB);
  the root is formed at the first draw, the same numbers.
- The test-grid sampler mapped every draw at once: its Kronecker temporaries (the joint prior
  draw ``[S, p_1 + n_1, p_2 + n_2]``, the field draws, their copies) were about 3.4 times the
  base noise (a 100 x 100 grid, 100^2 test points, 500 draws: peak rise 686 MB besides the
  192 MB noise, now 143 MB); now a block of draws at a time (noise up to ``_DRAW_BYTES``).
- ``GaussNewtonKronSolve`` factored the capacitance of the shift preconditioner and then that
  of the exact diagonal (two per Gauss-Newton step, one discarded), and every ``solve`` ended
  by building the posterior's two preconditioners (three more capacitances and the exact
  diagonal), which no fit step reads: 9 capacitances per Adam step of the benchmark's
  ``max_iter=3`` setting, now 3 (0.8 s of CPU per step saved on 400 x 400).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

import bayesphys.gp_pde.posterior as gp_post
from bayesphys._linalg import psd_eigen_root
from bayesphys.gp_pde import GaussNewtonKronSolve, GPPDESolver, KronSolve
from bayesphys.gp_pde import kernels as gp_kernels
from bayesphys.gp_pde import solve as gp_solve
from bayesphys.gp_pde.operator import build_factors

from ..memory_checks import linux_only, peak_rise_mb
from .test_solve import _setup

F64 = torch.float64


def _model_2d(n: int = 12, q: int = 3) -> GPPDESolver:
    m = GPPDESolver("poisson2d-low", n_col=n, num_mixtures=q, seed=0)
    m.solve_field()
    return m


def _axes(m: GPPDESolver, p: int) -> list[torch.Tensor]:
    return [torch.linspace(float(a[0]), float(a[-1]), p, dtype=F64) for a in m.axes]


# ---------------------------------------------------------------- the joint root on first draw
def test_mean_and_variances_form_no_joint_root_and_draws_form_the_old_one(monkeypatch):
    m = _model_2d()
    ta = _axes(m, 9)
    calls = []

    def counted(a):
        calls.append(tuple(a.shape))
        return psd_eigen_root(a)

    monkeypatch.setattr(gp_post, "psd_eigen_root", counted)
    post = m.posterior(ta)
    post.interval(0.95)
    assert calls == []  # the mean, variances and intervals need no joint root
    z = torch.randn(4, post._custom_root_dim, dtype=F64, generator=torch.Generator().manual_seed(0))
    draws = post.rsample((4,), base_samples=z)
    assert calls == [(9 + 12, 9 + 12)] * 2
    post.rsample((4,), base_samples=z)
    assert len(calls) == 2  # formed once
    # the roots are those the posterior formed eagerly before (the same operations)
    with torch.no_grad():
        fac = m._factors()
        for k, fc, xt, root in zip(m.kernels, fac, ta, post._custom_root.roots):
            kxs = k.gram(xt, fc.x, 0)
            joint = torch.cat(
                [torch.cat([k.gram(xt, xt, 0), kxs], 1), torch.cat([kxs.mT, fc.C], 1)]
            )
            assert torch.equal(root, psd_eigen_root(joint))
    assert draws.shape == (4, 9, 9) and bool(torch.isfinite(draws).all())


def test_mixture_values_are_the_kernels_values_bit_for_bit():
    m = _model_2d()
    x = torch.linspace(-0.3, 2.0, 37, dtype=F64)
    with torch.no_grad():
        for k in m.kernels:
            a, mu, w = k.mixture()
            assert torch.equal(
                gp_kernels.mixture_values(k.kind, x[:, None] - x[None, :], a, mu, w),
                k.gram(x, x, 0),
            )


# ---------------------------------------------------------------- draws a block at a time
def test_draws_are_mapped_a_block_at_a_time_with_the_same_numbers(monkeypatch):
    m = _model_2d()
    post = m.posterior(_axes(m, 7))
    root = post._custom_root
    z = torch.randn(
        10, post._custom_root_dim, dtype=F64, generator=torch.Generator().manual_seed(1)
    )
    whole = root._draws(z)  # every draw at once, as before
    assert torch.equal(root(z), whole)  # within one block: the same code
    calls = []
    real = root.solver.sample_u

    def counted(zz):
        calls.append(zz.shape[0])
        return real(zz)

    monkeypatch.setattr(root.solver, "sample_u", counted)
    monkeypatch.setattr(gp_post, "_DRAW_BYTES", 4 * z.shape[-1] * 8, raising=False)
    blocks = root(z)
    assert calls == [4, 4, 2]
    # other matrix shapes in the products: the same numbers to round-off
    torch.testing.assert_close(blocks, whole, rtol=1e-12, atol=1e-12 * float(whole.abs().max()))
    assert root(z[:0]).shape == (0, 49)


@linux_only
def test_many_draws_on_a_2d_grid_hold_no_temporaries_of_every_draw():
    # 400 draws on a 40 x 40 grid with 40 x 40 test points: 25 MB of noise, allocated before
    # the peak is read; mapping all of them at once rose the peak by 89 MB, blocks of 2 MB of
    # noise by 11 MB
    body = (
        "import bayesphys.gp_pde.posterior as gpp\n"
        "from bayesphys.gp_pde import GPPDESolver\n"
        "gpp._DRAW_BYTES = 2**21\n"
        "m = GPPDESolver('poisson2d-low', n_col=40, num_mixtures=3, seed=0)\n"
        "m.solve_field()\n"
        "ax = [torch.linspace(float(a[0]), float(a[-1]), 40, dtype=torch.float64)"
        " for a in m.axes]\n"
        "post = m.posterior(ax)\n"
        "z = torch.randn(400, post._custom_root_dim, dtype=torch.float64)\n"
        "post.rsample((2,), base_samples=z[:2])\n"
        "before = _reset_peak()\n"  # the rise from here
        "post.rsample((400,), base_samples=z)"
    )
    assert peak_rise_mb(body) < 25  # below the noise's own size (the draws are 5 MB)


# ---------------------------------------------------------------- Gauss-Newton's factorisations
def _gn(precond: str = "diag"):
    ks, axes, op, _, f, gb = _setup((9, 8), seed=3, c0=-1.0)
    op = replace(op, cubic=True)
    fac = build_factors(ks, axes, op, eigen=True, jitter=1e-4)
    gn = GaussNewtonKronSolve(fac, op, 5.0, 40.0, max_iter=3, cg_maxiter=40, precond=precond)
    return gn, 0.3 * f, 0.3 * gb


def test_gauss_newton_factors_one_capacitance_per_step_and_the_posteriors_on_use(monkeypatch):
    gn, f, gb = _gn()
    caps, diags = [], []
    real_cap, real_diag = KronSolve._capacitance, GaussNewtonKronSolve.gtg_diagonal

    def cap(self):
        caps.append(1)
        return real_cap(self)

    def diag(self, d):
        diags.append(1)
        return real_diag(self, d)

    monkeypatch.setattr(KronSolve, "_capacitance", cap)
    monkeypatch.setattr(GaussNewtonKronSolve, "gtg_diagonal", diag)
    u = gn.solve(f, gb)
    # the linear start (u0 None) and one preconditioner per step (was 2 per step, plus 3 and
    # one exact diagonal at the end of the solve for the posterior)
    assert len(caps) == 1 + gn.iterations and len(diags) == gn.iterations
    # the posterior's solves, built at first use: those built eagerly before, bit for bit
    shift = float(gn.d.mean())
    old_pre = gn._preconditioner(shift)
    old_cg = gn._preconditioner(shift)
    old_cg.set_diagonal(1 + gn.tau2 * gn.gtg_diagonal(gn.d).clamp_min(0))
    n_caps = len(caps)
    for new, old in ((gn.pre, old_pre), (gn._draw_preconditioner(), old_cg)):
        assert torch.equal(new.cap_chol, old.cap_chol) and torch.equal(new.delta, old.delta)
    assert len(caps) == n_caps + 2  # one each, and only once
    gn.pre, gn._draw_preconditioner()
    assert len(caps) == n_caps + 2
    z = torch.randn(2, gn.root_dim, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert gn.sample_u(z).shape == (2, *u.shape)


def test_shift_preconditioner_draws_share_the_variances_solve():
    gn, f, gb = _gn("shift")
    gn.solve(f, gb)
    assert gn._draw_preconditioner() is gn.pre


def test_kron_solve_with_a_diagonal_is_the_set_diagonal_solve_with_one_factorisation(
    monkeypatch,
):
    ks, axes, op, fac, f, gb = _setup((7, 6), seed=2)
    dprec = 1 + torch.rand(7, 6, dtype=F64, generator=torch.Generator().manual_seed(4))
    old = KronSolve(fac, op, 3.0, 20.0).set_diagonal(dprec)
    caps = []
    real = gp_solve.KronSolve._capacitance
    monkeypatch.setattr(
        gp_solve.KronSolve, "_capacitance", lambda self: caps.append(1) or real(self)
    )
    new = KronSolve(fac, op, 3.0, 20.0, dprec=dprec)
    assert len(caps) == 1
    assert torch.equal(new.cap_chol, old.cap_chol) and torch.equal(new.delta, old.delta)
    rhs = torch.randn(7, 6, dtype=F64, generator=torch.Generator().manual_seed(5))
    assert torch.equal(new.precision_solve(rhs), old.precision_solve(rhs))
    assert math.isclose(float(new.dprec.sum()), float(dprec.sum())) and new.dprec is not dprec
