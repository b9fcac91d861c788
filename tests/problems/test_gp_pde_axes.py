"""PDEProblem.axes checks its point count."""

from __future__ import annotations

import pytest

from bayesphys.problems.gp_pde import get_problem


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
