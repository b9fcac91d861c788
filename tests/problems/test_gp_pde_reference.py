"""The registered GP-HM reference problems: each exact solution is the one the module table
states (restated here independently), and each source, built by autograd, equals the PDE
applied to that solution in closed form (the registered solutions had no test)."""

from __future__ import annotations

import math

import pytest
import torch

from bayesphys.problems.gp_pde import PROBLEMS, get_problem

F64 = torch.float64
sin, cos = torch.sin, torch.cos


def _h(t):
    return sin(t) + 0.1 * sin(20 * t) + cos(100 * t)


#: the module table, restated: id -> (u, the PDE's left-hand side applied to u in closed form)
TABLE = {
    "poisson1d-sin100": (lambda x: sin(100 * x), lambda x: -1e4 * sin(100 * x)),
    "poisson1d-xsin200": (
        lambda x: x * sin(200 * x),
        lambda x: 400 * cos(200 * x) - 4e4 * x * sin(200 * x),
    ),
    "poisson1d-multiscale": (
        lambda x: sin(x) + 0.1 * sin(20 * x) + 0.05 * cos(100 * x),
        lambda x: -sin(x) - 40 * sin(20 * x) - 500 * cos(100 * x),
    ),
    "poisson1d-multiscale-sin": (
        lambda x: sin(x) + 0.1 * sin(20 * x) + 0.05 * sin(100 * x),
        lambda x: -sin(x) - 40 * sin(20 * x) - 500 * sin(100 * x),
    ),
    "poisson1d-sin500-trend": (
        lambda x: sin(500 * x) - 2 * (x - 0.5) ** 2,
        lambda x: -2.5e5 * sin(500 * x) - 4,
    ),
    "poisson1d-low": (
        lambda x: sin(2 * math.pi * x) + x,
        lambda x: -4 * math.pi**2 * sin(2 * math.pi * x),
    ),
    "allencahn1d-sin100": (
        lambda x: sin(100 * x),
        lambda x: -1e4 * sin(100 * x) + sin(100 * x) * (sin(100 * x) ** 2 - 1),
    ),
    "poisson2d-sin100": (
        lambda x, y: sin(100 * x) * sin(100 * y),
        lambda x, y: -2e4 * sin(100 * x) * sin(100 * y),
    ),
    "poisson2d-low": (
        lambda x, y: sin(math.pi * x) * sin(2 * math.pi * y) + x * y,
        lambda x, y: -5 * math.pi**2 * sin(math.pi * x) * sin(2 * math.pi * y),
    ),
    "allencahn2d-low": (
        lambda x, y: sin(math.pi * x) * sin(2 * math.pi * y) + x * y,
        lambda x, y: (
            -5 * math.pi**2 * sin(math.pi * x) * sin(2 * math.pi * y)
            + (u := sin(math.pi * x) * sin(2 * math.pi * y) + x * y) * (u * u - 1)
        ),
    ),
    "allencahn2d-multiscale": (
        lambda x, y: _h(x) * _h(y),
        lambda x, y: (
            (-sin(x) - 40 * sin(20 * x) - 1e4 * cos(100 * x)) * _h(y)
            + _h(x) * (-sin(y) - 40 * sin(20 * y) - 1e4 * cos(100 * y))
            + _h(x) * _h(y) * ((_h(x) * _h(y)) ** 2 - 1)
        ),
    ),
    # beta u_x + u_t of a travelling wave at speed beta: zero
    "advection": (lambda x, t: sin(x - 200 * t), lambda x, t: torch.zeros_like(x)),
    "advection-low": (
        lambda x, t: sin(2 * math.pi * (x - 2 * t)),
        lambda x, t: torch.zeros_like(x),
    ),
}


def test_every_registered_problem_is_in_the_table():
    assert set(TABLE) == set(PROBLEMS)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_exact_solution_and_source_match_the_table(name):
    problem = get_problem(name)
    u_of, f_of = TABLE[name]
    gen = torch.Generator().manual_seed(0)
    axes = [
        lo + (hi - lo) * torch.rand(9, generator=gen, dtype=F64).sort().values
        for lo, hi in problem.domain
    ]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).unbind(-1)
    u = problem.solution(axes)
    torch.testing.assert_close(u, u_of(*pts), rtol=1e-12, atol=1e-12)
    f = problem.source(axes)
    want = f_of(*pts)
    scale = float(want.abs().max()) or 1.0
    torch.testing.assert_close(f, want, rtol=1e-10, atol=1e-10 * max(scale, 1e3))
