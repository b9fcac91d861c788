r"""Whether a collocation grid resolves a registered problem's exact solution.

A uniform axis of :math:`n` points over a length :math:`L` samples frequencies up to its
Nyquist frequency :math:`(n - 1) / (2L)` cycles per unit length. A solution above it is
aliased: on the grid it is indistinguishable from a lower frequency, the source and boundary
values determine that alias, and the posterior, which only sees the grid, is confidently wrong
(``poisson1d-sin100`` on 60 points, 60 steps: rms error 22 for a solution of amplitude 1,
posterior sds of at most 0.33, no test point of the truth inside two sd).
"""

from __future__ import annotations

import math
import warnings

from torch import Tensor

from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..problems.gp_pde import PDEProblem, solution_frequencies


def warn_unresolved(problem: PDEProblem, axes: list[Tensor]) -> None:
    """One ``UserWarning`` at the user's line when an axis of the grid ``axes`` (``[n_i]``
    each) lies below the Nyquist rate of ``problem``'s exact solution along it (registered
    solutions only: :func:`~bayesphys.problems.gp_pde.solution_frequencies`)."""
    freqs = solution_frequencies(problem)
    if freqs is None or len(freqs) != len(axes):
        return
    parts = []
    for j, (nu, a) in enumerate(zip(freqs, axes)):
        n, length = a.numel(), float(a[-1] - a[0])
        nyquist = (n - 1) / (2 * length)
        if nu > nyquist:
            need = math.ceil(2 * nu * length - 1e-9) + 1
            parts.append(
                f"axis {j}: {n} points over length {length:.6g} resolve up to "
                f"{nyquist:.4g} cycles per unit, the solution reaches {nu:.4g} "
                f"(n_col >= {need} needed)"
            )
    if parts:
        warnings.warn(
            f"problem {problem.name!r}: the collocation grid is below the solution's Nyquist "
            f"rate ({'; '.join(parts)}). The solution is aliased on this grid: the posterior "
            "mean can be wrong by the solution's whole amplitude while its sd stays small",
            BayesphysUserWarning,
            stacklevel=user_stacklevel(),
        )
