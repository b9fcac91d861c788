"""Unevenly spaced grids and the structured solver's input checks.

- ``periodogram_peaks`` took the first spacing as the grid step, so on a Chebyshev grid the
  starting frequencies came out ~35x too high and the fit failed (rel. L2 ~1.0 after 60 steps
  where the even grid reached 1.6e-5);
- ``KronSolve.solve`` accepted a boundary vector of the wrong length (extra values ignored) and
  a NaN source (an all-NaN field), and built from factors without an eigendecomposition it died
  with an ``AttributeError``;
- ``SpectralMixture1d.gram`` broadcast a column ``[N, 1]`` to a ``[N, N, 1]`` result;
- a boundary grid tensor with NaN inside (only the faces are read) was refused;
- an error inside a step of a joint (``method="ref"``) fit left the field of the start beside
  the hyperparameters of the last completed step.
"""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.gp_pde import GPPDESolver, KronSolve, LinearPDEOperator, SpectralMixture1d
from bayesphys.gp_pde._errors import NumericalFailure
from bayesphys.gp_pde._inputs import periodogram_peaks
from bayesphys.gp_pde.operator import build_factors

F64 = torch.float64
W = 2 * math.pi * 8  # sin(2 pi 8 x): 8 cycles per unit


def _chebyshev(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=F64)
    return 0.5 - 0.5 * torch.cos(math.pi * k / (n - 1))


def test_periodogram_peak_on_a_chebyshev_grid_is_in_cycles_per_unit():
    x = _chebyshev(60)
    pk = periodogram_peaks(torch.sin(W * x), x, 0, 3)
    assert abs(float(pk[0]) - 8.0) < 0.5, pk
    # an even grid is untouched by the resampling (same peaks as before)
    xu = torch.linspace(0, 1, 60, dtype=F64)
    pku = periodogram_peaks(torch.sin(W * xu), xu, 0, 3)
    assert abs(float(pku[0]) - 8.0) < 0.5, pku


def test_a_fit_on_a_chebyshev_grid_solves_a_high_frequency_poisson_problem():
    x = _chebyshev(60)
    m = GPPDESolver(
        x=x,
        source=lambda a: -(W**2) * torch.sin(W * a),
        boundary=lambda a: torch.sin(W * a),
        num_mixtures=4,
    )
    assert abs(float(m.kernels[0].mu.detach()[0]) - 8.0) < 0.5
    m.fit(steps=60, progress=False)
    t = torch.linspace(0, 1, 200, dtype=F64)
    err = float((m.predict([t]) - torch.sin(W * t)).norm() / torch.sin(W * t).norm())
    assert err < 1e-3, err


def _kron_solve(eigen: bool = True):
    x = torch.linspace(0, 1, 6, dtype=F64)
    op = LinearPDEOperator.for_equation("poisson", 2)
    ks = [SpectralMixture1d(2) for _ in range(2)]
    fac = build_factors(ks, [x, x[:5]], op, jitter=1e-6, eigen=eigen)
    return fac, op


def test_kron_solve_checks_source_and_boundary():
    fac, op = _kron_solve()
    kr = KronSolve(fac, op, 2.0, 10.0)
    f = torch.randn(6, 5, dtype=F64)
    nb = 2 * 5 + 2 * 6
    g = torch.randn(nb, dtype=F64)
    u = kr.solve(f, g)
    assert u.shape == (6, 5)
    torch.testing.assert_close(kr.solve(f.reshape(-1), g), u)
    # a batch of sources still works
    ub = kr.solve(torch.stack([f, 2 * f]), g)
    assert ub.shape == (2, 6, 5)
    torch.testing.assert_close(ub[0], u)
    with pytest.raises(ValueError, match=r"g: expected a finite boundary-value tensor of shape"):
        kr.solve(f, torch.randn(nb + 3, dtype=F64))
    with pytest.raises(ValueError, match=r"g: expected .* shape \(22,\), received shape \(19,\)"):
        kr.solve(f, g[:-3])
    with pytest.raises(ValueError, match=r"f: expected a finite grid tensor of shape \(6, 5\)"):
        kr.solve(f.mT.contiguous(), g)
    with pytest.raises(NumericalFailure, match="f: expected finite values"):
        kr.solve(f * float("nan"), g)
    with pytest.raises(NumericalFailure, match="f: expected finite values"):
        kr.solve(torch.stack([f, f * float("nan")]), g)


def test_kron_solve_needs_the_eigendecomposition():
    fac, op = _kron_solve(eigen=False)
    with pytest.raises(ValueError, match="eigen=True"):
        KronSolve(fac, op, 2.0, 10.0)


def test_gram_refuses_points_that_are_not_1d():
    k = SpectralMixture1d(2)
    x = torch.linspace(0, 1, 5, dtype=F64)
    assert k.gram(x).shape == (5, 5) and k.gram(x, x[:3]).shape == (5, 3)
    with pytest.raises(ValueError, match=r"x1: expected a 1-D tensor .* received \(5, 1\)"):
        k.gram(x[:, None])
    with pytest.raises(ValueError, match=r"x2: expected a 1-D tensor .* received \(5, 1\)"):
        k.gram(x, x[:, None])


def test_boundary_tensor_needs_finite_faces_only():
    x = torch.linspace(0, 1, 20, dtype=F64)
    b = torch.full((20,), float("nan"), dtype=F64)
    b[0], b[-1] = 0.0, 1.0
    m = GPPDESolver(x=x, source=torch.sin(x), boundary=b, num_mixtures=2)
    assert torch.equal(m.g, torch.tensor([0.0, 1.0], dtype=F64))
    b[-1] = float("nan")
    with pytest.raises(ValueError, match=r"boundary \(its face values\): expected finite"):
        GPPDESolver(x=x, source=torch.sin(x), boundary=b, num_mixtures=2)


def test_an_error_inside_a_joint_fit_keeps_its_field_with_its_hyperparameters():
    x = torch.linspace(0, 1, 16, dtype=F64)
    m = GPPDESolver(
        x=x, source=lambda a: torch.sin(5 * a), boundary=lambda a: a, num_mixtures=2, method="ref"
    )
    u0 = m.u.clone()
    calls = {"n": 0}
    orig = m._factors

    def failing():
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("a bug")
        return orig()

    m._factors = failing
    with pytest.raises(RuntimeError, match="a bug"):
        m.fit(steps=8, progress=False)
    m._factors = orig
    # the jointly optimised field moved with the three completed steps and was kept
    assert not torch.equal(m.u, u0)
    again = m.posterior([x]).mean
    assert bool(torch.isfinite(again).all())
