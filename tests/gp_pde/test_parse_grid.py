"""parse_grid (the ``x=`` of GPPDESolver): scattered points are accepted only as a full tensor
product, in any order; each other input is refused by name (branches no test reached)."""

from __future__ import annotations

import pytest
import torch

from bayesphys.gp_pde._inputs import parse_grid

F64 = torch.float64
CPU = torch.device("cpu")
A = torch.linspace(0, 1, 5, dtype=F64)
GRID = torch.stack(torch.meshgrid(A, 2 * A, indexing="ij"), -1).reshape(-1, 2)


def _parse(x):
    return parse_grid(x, dtype=F64, device=CPU)


def test_shuffled_points_of_a_full_grid_give_its_axes():
    perm = torch.randperm(25, generator=torch.Generator().manual_seed(0))
    axes = _parse(GRID[perm])
    assert len(axes) == 2
    torch.testing.assert_close(axes[0], A)
    torch.testing.assert_close(axes[1], 2 * A)


@pytest.mark.parametrize(
    ("x", "err", "match"),
    [
        (GRID[:-1], ValueError, r"^x: expected a tensor-product grid; 24 points"),
        (torch.cat([GRID[:-1], GRID[:1]]), ValueError, r"missing or repeated"),
        ([A, A, A, A], ValueError, r"^x: expected a 1-, 2- or 3-D grid, received 4 axes"),
        ([A[:3]], ValueError, r"^x\[0\]: expected at least 4 grid points, received 3"),
        (["a", "b"], TypeError, r"^x\[0\]: expected real coordinates"),
        ([object()], TypeError, r"^x: expected real coordinates"),
        (torch.tensor(1.0, dtype=F64), ValueError, r"^x: expected grid axes or points \[M, d\]"),
    ],
    ids=["missing", "repeated", "4-D", "few", "strings", "objects", "scalar"],
)
def test_bad_grids_are_refused_by_name(x, err, match):
    with pytest.raises(err, match=match):
        _parse(x)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_point_is_refused_as_non_finite(bad):
    # each NaN was a distinct coordinate of torch.unique, so the grid was refused as "not a
    # tensor-product grid" (6 distinct coordinates), which sent the user looking for a
    # missing point
    pts = GRID.clone()
    pts[3, 0] = bad
    with pytest.raises(ValueError, match=r"^x: expected finite values"):
        _parse(pts)


def test_points_out_of_grid_order_are_refused_where_tensors_are_read_on_the_grid():
    """A source or boundary tensor ``[n_1..n_d]`` is read on the grid of the sorted axes: with
    points reversed, shuffled or meshed with ``indexing="xy"`` the values, listed in the
    points' order, were read at other points (a reversed 1-D grid solved the mirrored problem)
    without a word. Such points are now refused by name when a tensor is read on the grid, and
    still accepted with callables only."""
    from bayesphys.gp_pde import GPPDESolver

    x = torch.linspace(0, 1, 8, dtype=F64)
    rev = x.flip(0)[:, None]  # a reversed 1-D grid of points
    with pytest.raises(ValueError, match=r"received x\[0\] = \[1.0\] where \[0.0\] belongs"):
        GPPDESolver(x=rev, source=-6 * rev[:, 0], boundary=rev[:, 0] ** 3, num_mixtures=2)
    with pytest.raises(ValueError, match=r"the order boundary \[8\] is read in"):
        GPPDESolver(x=rev, source=lambda t: -6 * t, boundary=rev[:, 0] ** 3, num_mixtures=2)
    m = GPPDESolver(x=rev, source=lambda t: -6 * t, boundary=lambda t: t**3, num_mixtures=2)
    torch.testing.assert_close(m.axes[0], x)
    torch.testing.assert_close(m.f, -6 * x)
    fwd = GPPDESolver(x=x[:, None], source=-6 * x, boundary=x**3, num_mixtures=2)
    torch.testing.assert_close(fwd.f, -6 * x)

    xy = torch.stack(torch.meshgrid(A, 2 * A, indexing="xy"), -1).reshape(-1, 2)
    with pytest.raises(ValueError, match=r"^x: expected the grid points in row-major order") as e:
        parse_grid(xy, dtype=F64, device=CPU, grid_tensors="source")
    assert "(the order source [5, 5] is read in), received x[1] = [0.25, 0.0]" in str(e.value)
    ordered = parse_grid(GRID, dtype=F64, device=CPU, grid_tensors="source")
    torch.testing.assert_close(ordered[1], 2 * A)
