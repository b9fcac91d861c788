"""A GP-PDE solver's state is its own: a later in-place edit of a tensor the caller gave it
does not reach it (review of aliasing; each test failed before its mend)."""

from __future__ import annotations

import torch

from bayesphys.gp_pde import KronSolve

from .test_solve import _setup


def test_kron_solve_keeps_a_copy_of_its_diagonal():
    """set_diagonal kept the caller's ``dprec``: sample_u reads it at every draw while the
    solve's inverse diagonal and capacitance were formed at the call, so an in-place edit of
    the caller's tensor afterwards gave draws of another diagonal than the solve's."""
    _, _, op, fac, _, _ = _setup((6, 5), seed=0)
    solver = KronSolve(fac, op, 2.0, 3.0)
    dprec = torch.linspace(1.0, 2.0, 30, dtype=torch.float64).reshape(6, 5)
    solver.set_diagonal(dprec)
    z = torch.randn(
        4, solver.root_dim, generator=torch.Generator().manual_seed(0), dtype=dprec.dtype
    )
    before = solver.sample_u(z)
    dprec.mul_(4.0)
    torch.testing.assert_close(solver.sample_u(z), before, rtol=0, atol=0)
