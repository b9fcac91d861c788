"""PDEProblem.axes checks its point count; source differentiates any exact solution."""

from __future__ import annotations

import pytest
import torch

from bayesphys.problems.gp_pde import PDEProblem, get_problem


@pytest.mark.parametrize(
    "n, error, match",
    [
        (2.7, TypeError, r"^n: expected an int, received 2.7"),  # was truncated to 2
        (0, ValueError, r"^n: expected an int >= 2, received 0"),  # was accepted (empty axes)
        (1, ValueError, r"^n: expected an int >= 2, received 1"),
        (True, TypeError, r"^n: expected an int"),
    ],
)
def test_axes_refuses_bad_point_counts(n, error, match):
    with pytest.raises(error, match=match):
        get_problem("poisson1d-low").axes(n)


def test_axes_accepts_integral_values():
    p = get_problem("poisson1d-low")
    assert [a.shape[0] for a in p.axes(7.0)] == [7]
    assert p.axes(None)[0].shape[0] == p.n_col


@pytest.mark.parametrize("method", ["solution", "source"])
def test_solution_and_source_refuse_a_wrong_axis_count(method):
    # one axis for a 2-D problem failed inside the exact solution ("missing 1 required
    # positional argument: 'y'"); a bare 1-D tensor was split into 0-d "axes"
    import torch

    p2, p1 = get_problem("poisson2d-low"), get_problem("poisson1d-low")
    x = p2.axes(5)[0]
    with pytest.raises(ValueError, match=r"^axes: expected a list of 2 1-D axes"):
        getattr(p2, method)([x])
    with pytest.raises(ValueError, match=r"^axes: expected a list of 1 1-D axes"):
        getattr(p1, method)(x)
    with pytest.raises(ValueError, match=r"^axes\[0\]: expected a 1-D tensor"):
        getattr(p1, method)([x[:, None]])
    assert getattr(p2, method)([x, x[:3]]).shape == (5, 3)
    assert getattr(p1, method)((x,)).shape == (5,)
    assert torch.isfinite(getattr(p1, method)([x])).all()


@pytest.mark.parametrize("method", ["solution", "source"])
def test_solution_and_source_take_axes_of_numbers_and_arrays(method):
    """A list of numbers (or an array) was refused ("axes[0]: expected a 1-D tensor, received
    list"), though every other coordinate input of the package takes one (as_tensor)."""
    import numpy as np
    import torch

    p1, p2 = get_problem("poisson1d-low"), get_problem("poisson2d-low")
    x = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    want1 = getattr(p1, method)([x])
    for axis in (x.tolist(), x.numpy(), (0, 0.25, 0.5, 0.75, 1)):
        got = getattr(p1, method)([axis])
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, want1, rtol=0, atol=0)
    # beside a tensor axis, a list takes that axis's dtype
    x32 = x.float()
    mixed = getattr(p2, method)([x32, [0.0, 0.5, 1.0]])
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, getattr(p2, method)([x32, x32[::2]]), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"^axes\[1\]: expected a 1-D tensor, received \(1, 3\)"):
        getattr(p2, method)([x, np.zeros((1, 3))])
    with pytest.raises(TypeError, match=r"^axes\[0\]: expected a tensor or array"):
        getattr(p1, method)([{"x": 1}])


@pytest.mark.parametrize(
    "equation, dim, exact, want",
    [
        ("poisson", 1, lambda x: torch.ones(x.shape, dtype=x.dtype), lambda x: 0 * x),
        ("poisson", 1, lambda x: 1 + 2 * x, lambda x: 0 * x),
        ("allencahn", 1, lambda x: 1 + 2 * x, lambda x: (1 + 2 * x) * ((1 + 2 * x) ** 2 - 1)),
        ("poisson", 2, lambda x, y: x * y, lambda x, y: 0 * x),
        ("poisson", 2, lambda x, y: x**2, lambda x, y: 2 + 0 * x),
        ("poisson", 3, lambda x, y, z: torch.sin(y), lambda x, y, z: -torch.sin(y)),
        ("advection", 2, lambda x, t: x - 2 * t, lambda x, t: 0 * x),
        ("advection", 2, lambda x, t: torch.sin(x), lambda x, t: 2 * torch.cos(x)),
    ],
)
def test_source_of_an_exact_solution_constant_or_linear_in_a_coordinate(equation, dim, exact, want):
    """The source of ``u = 1 + 2x``, ``u = xy``, ``u = x^2`` in 2-D (constant in ``y``) and the
    like failed with autograd's "element 0 of tensors does not require grad" or "appears to
    not have been used in the graph": a derivative that does not depend on a coordinate is
    zero."""
    p = PDEProblem("mine", equation, ((0.0, 1.0),) * dim, 8, exact, 1.0, beta=2.0)
    axes = [torch.linspace(0, 1 + j, 4 + j, dtype=torch.float64) for j in range(dim)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).unbind(-1)
    torch.testing.assert_close(p.source(axes), want(*pts), rtol=1e-12, atol=1e-12)
