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
