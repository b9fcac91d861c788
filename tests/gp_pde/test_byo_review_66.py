"""A user's own GP-PDE problems: a setting the chosen equation does not read is said so."""

from __future__ import annotations

import warnings

import pytest
import torch

from bayesphys.gp_pde import GPPDESolver

F64 = torch.float64
_X = torch.linspace(0.0, 1.0, 12, dtype=F64)


def _custom(**kw) -> GPPDESolver:
    return GPPDESolver(
        x=_X, source=lambda x: -torch.sin(3 * x), boundary=lambda x: 0 * x, num_mixtures=2, **kw
    )


@pytest.mark.parametrize("equation", ["poisson", "allencahn"])
def test_a_beta_the_equation_does_not_read_is_warned_about(equation):
    """beta=5 with the Poisson equation (a user's D u'' = f) was kept in config and changed
    nothing, without a word: the solution was that of u'' = f."""
    with pytest.warns(UserWarning, match=r"^beta: only equation='advection' reads it"):
        m = _custom(equation=equation, beta=5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = _custom(equation=equation)
    # what the warning says: the operator is the same as without beta
    assert m.op == plain.op
    with pytest.warns(UserWarning, match=r"^beta: only equation='advection' reads it"):
        GPPDESolver("poisson1d-low", beta=5.0, num_mixtures=2)


def test_beta_where_it_is_read_and_a_reload_stay_silent(tmp_path):
    axes = [torch.linspace(0, 1, 8, dtype=F64), torch.linspace(0, 1, 6, dtype=F64)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = GPPDESolver(
            x=axes,
            source=lambda x, t: 0 * x,
            boundary=lambda x, t: torch.sin(6.0 * (x - 2.0 * t)),
            equation="advection",
            beta=2.0,
            num_mixtures=2,
        )
        assert m.op.coefs == (2.0, 1.0)
        m = _custom()  # no beta given: its config holds the default 1.0
        m.save(tmp_path / "m.pt")
        back = GPPDESolver.load(tmp_path / "m.pt")
    assert back.config["beta"] == m.config["beta"] == 1.0
