"""The trained state of a GPPDESolver, for tests that compare two solvers bit for bit."""

from __future__ import annotations

import torch

from bayesphys.gp_pde import GPPDESolver


def solver_state(m: GPPDESolver) -> dict[str, torch.Tensor]:
    """Copies of the kernels' parameters and the two log-precisions."""
    out = {k: v.detach().clone() for k, v in m.kernels.state_dict().items()}
    out.update(tau_b=m.log_tau_b.detach().clone(), tau_pde=m.log_tau_pde.detach().clone())
    return out


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether two :func:`solver_state` records hold the same names and equal values."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
