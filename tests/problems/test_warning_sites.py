"""The reference solvers' warnings point at the user's line, also through the test-set builders
that call them (they named rgnp.py)."""

from __future__ import annotations

import functools
import inspect
import warnings

import numpy as np
import torch

from bayesphys.problems.fisher_kolmogorov import fk_forward, fk_forward_tangent
from bayesphys.problems.rgnp import burgers, poisson

F64 = torch.float64


def _warnings_at(text: str, line: int, rec) -> list[warnings.WarningMessage]:
    got = [w for w in rec if text in str(w.message)]
    assert got, [str(w.message) for w in rec]
    assert all((w.filename, w.lineno) == (__file__, line) for w in got), [
        (w.filename, w.lineno) for w in got
    ]
    assert all(issubclass(w.category, RuntimeWarning) for w in got)
    return got


def test_solve_poisson_warns_at_user_line_directly_and_through_the_test_set(monkeypatch):
    z, w = np.full((1, 5), 0.5), np.ones(1)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        poisson.solve_poisson(z, w, n_nodes=11, max_iter=1)
    _warnings_at("solve_poisson: Newton did not converge", line, rec)
    # poisson_test_set solves with the defaults; one Newton step does not converge
    monkeypatch.setattr(
        poisson, "solve_poisson", functools.partial(poisson.solve_poisson, max_iter=1)
    )
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        poisson.poisson_test_set(1, n_nodes=11)
    _warnings_at("solve_poisson: Newton did not converge", line, rec)


def test_solve_burgers_warns_at_user_line_directly_and_through_the_test_set(monkeypatch):
    kw = dict(n_nodes=11, n_steps=2)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        burgers.solve_burgers(np.array([[0.05, 0.8]]), np.ones(1), tol=0.0, **kw)
    _warnings_at("solve_burgers: Newton did not converge", line, rec)
    # tol=0: no Newton iteration stops early (burgers_test_set takes the default tol)
    monkeypatch.setattr(burgers, "solve_burgers", functools.partial(burgers.solve_burgers, tol=0.0))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        burgers.burgers_test_set(1, **kw)
    _warnings_at("solve_burgers: Newton did not converge", line, rec)


def test_fk_unstable_step_with_tensor_parameters_warns_at_user_line():
    c0 = torch.linspace(0, 1, 8, dtype=F64)
    faces = [torch.ones(8, dtype=F64)]
    dw, rho = torch.tensor(1.0, dtype=F64), torch.tensor(0.0, dtype=F64)
    one = torch.ones(1, dtype=F64)
    kw = dict(t_end=10.0, steps=2, spacing=1.0)  # dt = 5, above the bound 0.5
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        fk_forward(c0, faces, dw, rho, **kw)
        fk_forward_tangent(c0, c0[None], faces, dw, rho, one, one, **kw)
    got = [w for w in rec if "stability bound" in str(w.message)]
    assert [(w.filename, w.lineno) for w in got] == [(__file__, line), (__file__, line + 1)]
