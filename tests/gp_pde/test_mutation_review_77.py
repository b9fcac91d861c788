"""Review 77 (mutation testing): kill-tests for wrong formulas in the GP-HM solver that the
rest of the suite let through. Each test checks the code against an independent oracle (the
documented equation written out, a dense matrix, the documented Armijo rule) and names the
mutant it kills."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from bayesphys.gp_pde import GaussNewtonKronSolve, LinearPDEOperator, SpectralMixture1d
from bayesphys.gp_pde import gauss_newton as gn_module
from bayesphys.gp_pde._kron import face_values, kron_apply, kron_dense
from bayesphys.gp_pde.operator import apply_operator, build_factors
from bayesphys.problems.gp_pde import PROBLEMS, get_problem, solution_frequencies

from .test_solve import _setup

F64 = torch.float64


@pytest.mark.parametrize("dim", [1, 2])
def test_named_equations_are_their_documented_operators(dim):
    """``for_equation`` builds the operators its docstring names, applied on the grid:
    ``"poisson"`` :math:`\\Delta u`, ``"allencahn"`` :math:`\\Delta u - u + u^3` (the problems'
    convention :math:`\\Delta u + u(u^2 - 1) = f`), ``"advection"``
    :math:`\\beta\\,\\partial_x u + \\partial_t u`; the oracle is the sum of the per-axis GP
    differentiation matrices ``D_j`` applied along their axes, written out with ``einsum``.

    Kills ``c0=-1.0`` -> ``c0=1.0`` in ``for_equation("allencahn")`` (operator.py): no other
    test built the Allen-Cahn operator by name and compared it with its equation."""
    shape = (7, 6)[:dim]
    ks, axes, _, _, _, _ = _setup(shape, seed=11)
    g = torch.Generator().manual_seed(12)
    u = torch.randn(shape, generator=g, dtype=F64)

    def lap(fac):
        if dim == 1:
            return fac[0].D @ u
        return torch.einsum("ia,aj->ij", fac[0].D, u) + torch.einsum("jb,ib->ij", fac[1].D, u)

    poisson = LinearPDEOperator.for_equation("poisson", dim)
    fac = build_factors(ks, axes, poisson, jitter=1e-4)
    torch.testing.assert_close(apply_operator(fac, poisson, u), lap(fac), rtol=1e-12, atol=1e-12)

    ac = LinearPDEOperator.for_equation("allencahn", dim)
    fac_ac = build_factors(ks, axes, ac, jitter=1e-4)
    expected = lap(fac_ac) - u + u**3
    torch.testing.assert_close(apply_operator(fac_ac, ac, u), expected, rtol=1e-12, atol=1e-12)

    if dim == 2:
        beta = 3.0
        adv = LinearPDEOperator.for_equation("advection", 2, beta=beta)
        fac_adv = build_factors(ks, axes, adv, jitter=1e-4)
        expected = beta * torch.einsum("ia,aj->ij", fac_adv[0].D, u) + torch.einsum(
            "jb,ib->ij", fac_adv[1].D, u
        )
        torch.testing.assert_close(apply_operator(fac_adv, adv, u), expected)


def test_gauss_newton_line_search_rejects_a_step_that_raises_the_objective(monkeypatch):
    """The Armijo test of :class:`GaussNewtonKronSolve` (module docstring: "the objective
    decreases monotonically") accepts a step ``alpha`` only if
    :math:`J(w + \\alpha\\delta) \\le J(w) + 10^{-4}\\alpha\\,\\nabla J^\\top\\delta`. The CG
    direction is replaced by a steepest-descent step long enough that the full step raises
    :math:`J` by half the Armijo margin: the full step must be rejected, a halved one taken,
    and the recorded objective must fall.

    Kills ``J + 1e-4 * alpha * slope`` -> ``J - 1e-4 * alpha * slope`` (gauss_newton.py): the
    sign slip turns the sufficient-decrease test into a "small increase allowed" test, which no
    test noticed because Gauss-Newton's own full steps always decreased."""
    ks, axes, op, _, f, gb = _setup((8, 7), seed=4, c0=-1.0)
    op = replace(op, cubic=True)
    fac = build_factors(ks, axes, op, eigen=True, jitter=1e-4)
    f, gb = 0.3 * f, 0.3 * gb
    gn = GaussNewtonKronSolve(fac, op, 5.0, 40.0, max_iter=1)
    u0 = 0.5 * torch.randn((8, 7), generator=torch.Generator().manual_seed(5), dtype=F64)
    w0 = kron_apply(gn.Rinv, u0)  # the solve's start in whitened coordinates
    seen = {}

    def overshoot(matvec, b, **kw):
        # b = -grad J(w0); J along w0 + t b, and h(t) = J - J0 - 0.5e-4 t |b|^2 (< 0 near 0)
        j0, gg = gn.objective[0], float((b * b).sum())

        def h(t):
            w = w0 + t * b
            _, rho, e = gn._parts(w)
            return gn._value(w, rho, e) - j0 - 0.5e-4 * t * gg

        hi = 1.0
        while h(hi) <= 0:
            hi *= 2
        lo = hi
        while h(lo) >= 0:
            lo /= 2
        for _ in range(200):  # the root of h past the minimum: J rises there
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if h(mid) < 0 else (lo, mid)
        seen.update(step=hi * b, t=hi, j0=j0, gg=gg)
        return hi * b, 1, 0.0

    monkeypatch.setattr(gn_module, "pcg", overshoot)
    gn.solve(f, gb, u0=u0)
    t, j0, gg = seen["t"], seen["j0"], seen["gg"]
    w = w0 + seen["step"]
    j_full = gn._value(w, *gn._parts(w)[1:])
    # the crafted full step raises J (beyond round-off) but within the mutant's margin
    assert j0 < j_full <= j0 + 1e-4 * t * gg
    assert len(gn.objective) == 2
    assert gn.objective[1] <= j0 - 1e-4 * 0.5 * t * gg  # Armijo at alpha = 1/2


#: the highest angular wavenumber per coordinate of each exact solution in the module table of
#: ``bayesphys.problems.gp_pde`` (``sin(k x)`` / ``cos(k x)`` -> ``k``; a polynomial trend adds
#: none), transcribed from the formulas, not from ``_SOLUTION_FREQUENCIES``
_TABLE_WAVENUMBERS = {
    "poisson1d-sin100": (100.0,),
    "poisson1d-xsin200": (200.0,),
    "poisson1d-multiscale": (100.0,),
    "poisson1d-multiscale-sin": (100.0,),
    "poisson1d-sin500-trend": (500.0,),
    "poisson1d-low": (2 * math.pi,),
    "allencahn1d-sin100": (100.0,),
    "poisson2d-sin100": (100.0, 100.0),
    "poisson2d-low": (math.pi, 2 * math.pi),  # sin(pi x) sin(2 pi y) + x y
    "allencahn2d-multiscale": (100.0, 100.0),
    "advection": (1.0, 200.0),  # sin(x - 200 t)
    "allencahn2d-low": (math.pi, 2 * math.pi),
    "advection-low": (2 * math.pi, 4 * math.pi),  # sin 2 pi (x - 2 t)
}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_solution_frequencies_are_the_table_wavenumbers_over_two_pi(name):
    r""":func:`solution_frequencies` gives, per coordinate, the highest frequency of the
    module table's exact solution in cycles per unit length, :math:`k / 2\pi`; the oracle is
    the table's formula, axis by axis (x first).

    Kills ``_low2d: (0.5, 1.0)`` -> ``(1.0, 0.5)`` (problems/gp_pde.py: the axes of
    ``sin(pi x) sin(2 pi y)`` swapped): the Nyquist tests only bounded each frequency by its
    grid, which the swap still met."""
    assert set(_TABLE_WAVENUMBERS) == set(PROBLEMS)
    expected = tuple(k / (2 * math.pi) for k in _TABLE_WAVENUMBERS[name])
    got = solution_frequencies(get_problem(name))
    assert got is not None and len(got) == len(expected)
    for g, e in zip(got, expected):
        assert math.isclose(g, e, rel_tol=1e-12)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_boundary_weight_is_200_and_500_for_advection(name):
    r"""``PDEProblem.llk_weight`` is :math:`\lambda_b` "200; 500 for advection" (its
    docstring, the paper's settings), for every registered problem.

    Kills ``llk_weight=500.0`` -> ``200.0`` of the ``advection`` problem
    (problems/gp_pde.py): no test read a registered problem's boundary weight."""
    problem = get_problem(name)
    assert problem.llk_weight == (500.0 if problem.equation == "advection" else 200.0)


def test_gauss_newton_variances_use_the_mean_shift_of_the_linearisation_point():
    r""":meth:`GaussNewtonKronSolve.test_variance` is documented as the diagonal of
    :math:`T\Sigma T^\top` for the constant-shift system at the linearisation point,
    :math:`\Sigma = (C^{-1} + \tau_2 J^\top C^{-1} J + \gamma S^\top S)^{-1}` with
    :math:`J = \mathcal A + \bar d I`, :math:`\bar d = \mathrm{mean}(3U^2)`; the oracle
    forms it with dense inverses.

    Kills ``_pre_shift = float(self.d.mean())`` -> ``float(self.d.max())``
    (gauss_newton.py): no test compared the Gauss-Newton posterior's variances with the
    shift they are documented to use."""
    shape = (6, 5)
    ks, axes, op, _, _, _ = _setup(shape, seed=7, c0=-1.0)
    op = replace(op, cubic=True)
    fac = build_factors(ks, axes, op, eigen=True, jitter=1e-4)
    tau2, gamma = 3.0, 20.0
    g = torch.Generator().manual_seed(8)
    u = 0.8 * torch.randn(shape, generator=g, dtype=F64)
    T = [torch.randn(4, n, generator=g, dtype=F64) for n in shape]
    gn = GaussNewtonKronSolve(fac, op, tau2, gamma)
    gn.linearise(u)
    var = gn.test_variance(T)

    m = u.numel()
    C = kron_dense([fc.C for fc in fac])
    Ci = torch.linalg.inv(C)
    eye = [torch.eye(n, dtype=F64) for n in shape]
    A = op.c0 * torch.eye(m, dtype=F64)
    for j, fc in enumerate(fac):
        A = A + op.coefs[j] * kron_dense([fc.D if i == j else e for i, e in enumerate(eye)])
    J = A + float((3 * u * u).mean()) * torch.eye(m, dtype=F64)
    S = face_values(torch.eye(m, dtype=F64).reshape(m, *shape), shape).mT
    Sig = torch.linalg.inv(Ci + tau2 * J.mT @ Ci @ J + gamma * S.mT @ S)
    Td = kron_dense(T)
    expected = (Td @ Sig @ Td.mT).diagonal().reshape(4, 4)
    torch.testing.assert_close(var, expected, rtol=1e-6, atol=1e-10 * float(expected.max()))


@pytest.mark.parametrize("kind", ["gm", "stm"])
@pytest.mark.parametrize("n", [0, 1, 2])
def test_gram_of_a_nearly_uniform_grid_is_the_gram_of_its_own_lags(kind, n):
    r""":func:`uniform_step` calls a grid even only "to ``1e-12`` of its span": points moved
    by ``1e-8`` of a step are not, so :meth:`SpectralMixture1d.gram` must evaluate their own
    lags (the oracle: :meth:`deriv` of the direct lag matrix), not the lags of the uniform grid
    it nearly is (an error of ``|k'| * 1e-8`` of a step).

    Kills ``atol=1e-12 * ...`` -> ``atol=1e-6 * ...`` in ``uniform_step`` (kernels.py): the
    Toeplitz tests used exactly uniform grids only."""
    k = SpectralMixture1d(3, kind=kind, mu=torch.tensor([0.5, 2.0, 4.0], dtype=F64))
    g = torch.Generator().manual_seed(9)
    x = torch.linspace(0, 2, 40, dtype=F64)
    h = float(x[1] - x[0])
    x = x + 1e-8 * h * (2 * torch.rand(40, generator=g, dtype=F64) - 1)
    with torch.no_grad():
        got = k.gram(x, n=n)
        direct = k.deriv(x[:, None] - x[None, :], n)
    torch.testing.assert_close(got, direct, rtol=1e-13, atol=1e-13 * float(direct.abs().max()))
