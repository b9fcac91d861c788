"""GPPDESolver's predictions are computed without gradient: test axes that require grad are
warned about (the mean came back detached from them without a word)."""

from __future__ import annotations

import warnings

import pytest
import torch

from bayesphys.gp_pde import GPPDESolver

F64 = torch.float64


@pytest.fixture(scope="module")
def solver():
    m = GPPDESolver("poisson1d-low", num_mixtures=2, n_col=12, seed=0)
    m.fit(steps=1, progress=False)
    return m


@pytest.mark.parametrize("method, arg", [("predict", "test_axes"), ("posterior", "x")])
def test_axes_that_require_grad_are_warned_about(solver, method, arg):
    axis = torch.linspace(0.1, 0.9, 5, dtype=F64)
    plain = getattr(solver, method)(axis)
    with pytest.warns(UserWarning, match=rf"^GPPDESolver\.{method}: {arg} requires grad, but"):
        out = getattr(solver, method)(axis.clone().requires_grad_())
    mean = out if method == "predict" else out.mean
    assert not mean.requires_grad  # documented: detached
    torch.testing.assert_close(mean, plain if method == "predict" else plain.mean)


def test_no_warning_without_grad(solver):
    axis = torch.linspace(0.1, 0.9, 5, dtype=F64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            solver.predict(axis)
        solver.predict(axis.detach())
