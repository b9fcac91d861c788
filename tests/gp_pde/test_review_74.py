"""Review 74 of the GP PDE solver: edge inputs of its public API.

Before: ``PDEProblem.source`` of integer axes failed with autograd's "only Tensors of floating
point dtype can require gradients", ``solution``/``source`` of axes of mixed dtypes (float32
and float64, or an integer axis beside a list) with ``torch.meshgrid``'s "expects all tensors to
have the same dtype", and ``solution`` of integer axes gave a float32 field; complex axes gave
a complex "solution". ``GPPDESolver.rel_l2`` of a problem whose exact solution is a number (a
0-d tensor, which the boundary takes as a constant) divided by that one value instead of the
norm over the test grid (``sqrt(p)`` times too large), a Python number failed with an
``AttributeError``, and an exact solution that is zero on the test grid gave NaN for a zero
mean (the package's ``relative_l2`` gives 0). ``SpectralMixture1d.deriv`` / ``forward`` of an
array or a list failed with an ``AttributeError`` and of complex lags inside the mixture sum;
``KronSolve.set_diagonal`` of a list with an ``AttributeError``.
"""

import math

import numpy as np
import pytest
import torch

from bayesphys.gp_pde import (
    GPPDESolver,
    KronSolve,
    LinearPDEOperator,
    SpectralMixture1d,
    build_factors,
)
from bayesphys.problems.gp_pde import PDEProblem, get_problem

F64 = torch.float64


@pytest.mark.parametrize(
    "axes",
    [
        [torch.arange(3), torch.arange(2)],
        [[0.0, 1.0, 2.0], torch.arange(2)],
        [torch.arange(3, dtype=torch.float32), torch.arange(2, dtype=F64)],
    ],
)
def test_problem_axes_of_integer_or_mixed_dtypes_give_the_float64_field(axes):
    p = get_problem("poisson2d-low")
    ref = [torch.arange(3, dtype=F64), torch.arange(2, dtype=F64)]
    sol, src = p.solution(axes), p.source(axes)
    assert sol.dtype == src.dtype == F64
    torch.testing.assert_close(sol, p.solution(ref), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(src, p.source(ref), rtol=1e-5, atol=1e-4)


def test_problem_axes_of_one_float_dtype_keep_it():
    p = get_problem("poisson1d-low")
    x = torch.linspace(0, 1, 5, dtype=torch.float32)
    assert p.solution([x]).dtype == p.source([x]).dtype == torch.float32


@pytest.mark.parametrize("method", ["solution", "source"])
def test_problem_complex_axes_are_refused_by_name(method):
    p = get_problem("poisson1d-low")
    with pytest.raises(TypeError, match=r"axes\[0\]: expected real coordinates"):
        getattr(p, method)([torch.linspace(0, 1, 3, dtype=torch.complex128)])


@pytest.mark.parametrize("value", [torch.tensor(1.0, dtype=F64), 1.0])
def test_rel_l2_of_a_constant_exact_solution_is_relative_over_the_grid(value):
    p = PDEProblem("const", "poisson", ((0.0, 1.0),), 8, lambda x: value, 1.0)
    m = GPPDESolver(p, num_mixtures=2, boundary=1.0)
    m.fit(steps=2, progress=False)
    pred = m.predict()
    want = float((pred - 1).norm() / math.sqrt(pred.numel()))
    assert m.rel_l2() == pytest.approx(want, rel=1e-12)


def test_rel_l2_of_a_wrongly_shaped_exact_solution_names_it():
    p = PDEProblem("bad", "poisson", ((0.0, 1.0),), 8, lambda x: torch.ones(3, dtype=F64), 1.0)
    m = GPPDESolver(p, num_mixtures=2, boundary=1.0)
    with pytest.raises(ValueError, match=r"problem.exact: expected values of shape \(300,\)"):
        m.rel_l2()


def test_rel_l2_of_a_zero_exact_solution_solved_exactly_is_zero():
    p = PDEProblem("zero", "poisson", ((0.0, 1.0),), 8, lambda x: 0 * x, 1.0)
    m = GPPDESolver(p, num_mixtures=2)
    res = m.fit(steps=2, progress=False, eval_every=1)
    assert torch.count_nonzero(m.u) == 0  # zero data: the field is exactly zero
    assert m.rel_l2() == 0.0
    assert res.extra["rel_l2"] == 0.0 and m.history["rel_l2"] == [0.0, 0.0]


@pytest.mark.parametrize("z", [np.array([0.0, 0.5]), [0.0, 0.5]])
def test_kernel_deriv_of_an_array_or_list_is_refused_by_name(z):
    k = SpectralMixture1d(2)
    with pytest.raises(TypeError, match="z: expected a tensor of lags"):
        k.deriv(z, 1)
    with pytest.raises(TypeError, match="z: expected a tensor of lags"):
        k(z)


def test_kernel_deriv_of_complex_or_meta_lags_is_refused_by_name():
    k = SpectralMixture1d(2)
    with pytest.raises(TypeError, match="z: expected real lags"):
        k.deriv(torch.tensor([0.5 + 0j]), 1)
    with pytest.raises(ValueError, match="z: expected lags on the kernel's device"):
        k.deriv(torch.tensor([0.5], device="meta"))
    # real lags of any dtype still work, in the kernel's dtype
    z = torch.tensor([0, 1])
    torch.testing.assert_close(k.deriv(z, 2), k.deriv(z.to(F64), 2))


def test_set_diagonal_of_a_list_is_refused_by_name():
    op = LinearPDEOperator.for_equation("poisson", 1)
    x = torch.linspace(0, 1, 6, dtype=F64)
    ks = KronSolve(build_factors([SpectralMixture1d(2)], [x], op, eigen=True), op, 1.0, 1.0)
    with pytest.raises(TypeError, match=r"dprec: expected a positive tensor of shape \(6,\)"):
        ks.set_diagonal([1.0] * 6)
