"""Data in the forms a user passes them: Python lists of source and boundary values are read
at full float64 precision, as the same values given as a float64 tensor or array."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from bayesphys.gp_pde import GPPDESolver

F64 = torch.float64


def _data():
    x = torch.linspace(0.0, 1.0, 16, dtype=F64)
    u = torch.sin(2 * math.pi * x) + x + 1e-9  # digits past float32's ~7
    f = -((2 * math.pi) ** 2) * torch.sin(2 * math.pi * x) + 1e-9
    return x, f, u


def test_list_source_and_boundary_keep_float64_precision():
    x, f, u = _data()
    ref = GPPDESolver(x=x, source=f, boundary=u, num_mixtures=2, seed=0)
    for src, bnd in ((f.tolist(), u.tolist()), (f.numpy(), u.numpy())):
        m = GPPDESolver(x=x.tolist(), source=src, boundary=bnd, num_mixtures=2, seed=0)
        # a list was converted to float32 first and lost ~1e-7 of each value
        assert torch.equal(m.f, ref.f)
        assert torch.equal(m.g, ref.g)


def test_callable_returning_a_list_keeps_float64_precision():
    x, f, u = _data()
    ref = GPPDESolver(x=x, source=f, boundary=u, num_mixtures=2, seed=0)
    m = GPPDESolver(
        x=x,
        source=lambda x1: f.tolist(),
        boundary=lambda x1: np.asarray(u).tolist(),
        num_mixtures=2,
        seed=0,
    )
    assert torch.equal(m.f, ref.f)
    assert torch.equal(m.g, ref.g)


def test_a_list_of_tensors_that_require_grad_is_taken_without_their_graph():
    """Values given as 0-d tensors (numpy cannot read them when they require grad) are
    stacked without their graph: torch's conversion warned about converting each one."""
    x, f, u = _data()
    ref = GPPDESolver(x=x, source=f, boundary=u, num_mixtures=2, seed=0)
    src = [v.clone().requires_grad_() for v in f]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = GPPDESolver(x=x, source=src, boundary=u, num_mixtures=2, seed=0)
    assert torch.equal(m.f, ref.f)
