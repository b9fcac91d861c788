"""Coverage review (round 78): gp_pde paths that no test of the default suite executed.

``build_factors`` with a kernel that has no parameters to take a dtype and device from (a
duck-typed kernel object, or a parameterless module), and ``GaussNewtonKronSolve.cov_u``
before a solve."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bayesphys.gp_pde import (
    GaussNewtonKronSolve,
    LinearPDEOperator,
    SpectralMixture1d,
    build_factors,
)

from .test_solve import _setup

F64 = torch.float64


class _Duck:
    """A kernel object with ``gram`` only (no parameters): ``SpectralMixture1d``'s Grams."""

    def __init__(self, k: SpectralMixture1d) -> None:
        self.k = k

    def gram(self, x, n=0):
        return self.k.gram(x, n=n)


class _Fixed(torch.nn.Module):
    """A parameterless kernel module (the same Grams, its parameters held as plain data)."""

    def __init__(self, k: SpectralMixture1d) -> None:
        super().__init__()
        self.__dict__["k"] = k  # not registered: this module has no parameters

    def gram(self, x, n=0):
        return self.k.gram(x, n=n)


@pytest.mark.parametrize("wrap", [_Duck, _Fixed])
@pytest.mark.parametrize("axis_dtype", [torch.float32, F64])
def test_build_factors_takes_a_tensor_axis_of_a_parameterless_kernel_in_float64(wrap, axis_dtype):
    """A tensor axis of a kernel with no parameters (no dtype or device to take) is taken in
    float64 on its own device: the factors equal those of the wrapped ``SpectralMixture1d``
    on the float64 axis, and the axis checks still apply (sorted, at least 2 points)."""
    op = LinearPDEOperator.for_equation("poisson", 1)
    k = SpectralMixture1d(2)
    assert next(k.parameters()).dtype == F64
    x = torch.linspace(0, 1, 9, dtype=F64)
    want = build_factors([k], [x], op, jitter=1e-6, eigen=True)[0]
    got = build_factors([wrap(k)], [x.to(axis_dtype)], op, jitter=1e-6, eigen=True)[0]
    assert got.x.dtype == F64
    for name in ("x", "C", "L", "Cop", "D", "lam", "Q"):
        # float32 linspace(0, 1, 9) is exact (multiples of 1/8): the same numbers
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    with pytest.raises(ValueError, match=r"^axes\[0\]: expected strictly increasing"):
        build_factors([wrap(k)], [torch.tensor([0.0, 2.0, 1.0], dtype=axis_dtype)], op)
    with pytest.raises(ValueError, match=r"^axes\[0\]: expected at least 2 grid points"):
        build_factors([wrap(k)], [torch.tensor([0.0], dtype=axis_dtype)], op)


def test_gauss_newton_cov_u_needs_a_solve_or_linearisation_first():
    """``cov_u`` before ``solve``/``linearise`` is refused naming both (as the other posterior
    pieces are); after ``linearise`` it is a symmetric positive definite ``[M, M]`` matrix."""
    ks, axes, op, _, _, _ = _setup((5, 4), seed=3, c0=-1.0)
    op = replace(op, cubic=True)
    fac = build_factors(ks, axes, op, eigen=True, jitter=1e-4)
    gn = GaussNewtonKronSolve(fac, op, 2.0, 30.0)
    with pytest.raises(ValueError, match=r"^cov_u: call solve\(\) or linearise\(\) first$"):
        gn.cov_u()
    gn.linearise(torch.zeros(5, 4, dtype=F64))
    cov = gn.cov_u()
    assert cov.shape == (20, 20)
    torch.testing.assert_close(cov, cov.mT, rtol=0, atol=1e-12)
    assert float(torch.linalg.eigvalsh(cov).min()) > 0
