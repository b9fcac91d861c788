r"""The conserved quantity of ProbConserv's GPME problems (Hansen et al., ICML 2023, §4)
rebuilt from boundary data: :math:`b(t) = U(t_0) + \int_{t_0}^t b'(s)\,ds`
(:func:`mass_from_fluxes`), to check :meth:`GPMEProblem.mass` against
:meth:`GPMEProblem.boundary_flux`.
"""

from __future__ import annotations

import math

import torch

from ..._checks import check_int, check_real
from ._common import _F64, _real
from .base import GPMEProblem
from .registry import get_problem

__all__ = ["mass_from_fluxes"]


def mass_from_fluxes(problem: GPMEProblem, t: float, param: float, n: int = 4001) -> float:
    r""":math:`b(t) = U(t_0) + \int_{t_0}^t b'(s)\,ds` by the midpoint rule on the fluxes.

    (The Stefan inflow is :math:`\propto s^{-1/2}`; the substitution :math:`s = a + r^2` on
    each piece :math:`[a, b]` makes the integrand smooth.) The interval is split where :math:`b'`
    has a kink or jump (:meth:`GPMEProblem.flux_breaks`: a front leaving the domain), ``n`` points
    per piece.
    """
    problem = get_problem(problem)
    param = _real("param", param)
    problem.check_params("param", param, param)
    t0 = problem.t_range[0]
    t = check_real("t", t, minimum=t0)
    n = check_int("n", n, minimum=2)  # n = 1 has no interval: it returned U(t0) for any t
    # from t0 itself: starting at max(t0, 0) lost the flux over [t0, 0) of a time range that
    # begins before 0
    ends = [t0, *sorted(b for b in problem.flux_breaks(param) if t0 < b < t), t]
    total = problem.mass(t0, param)
    for a, b in zip(ends[:-1], ends[1:]):
        if b <= a:  # t = t0: nothing to add (the Stefan flux at s = 0 is inf * 0 = NaN)
            continue
        # s = a + r^2 on each piece: a flux that starts like (s - a)^p (p = -1/2 for the
        # Stefan inflow, 1/m for the PME outflow) becomes r^(2p+1), smooth enough for the
        # midpoint rule
        r = torch.linspace(0.0, math.sqrt(b - a), n, dtype=_F64)
        mid, dr = 0.5 * (r[1:] + r[:-1]), r[1:] - r[:-1]
        total = total + (problem.boundary_flux(a + mid * mid, param) * 2 * mid * dr).sum()
    return float(total)
