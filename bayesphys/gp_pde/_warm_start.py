r"""Coarse-to-fine continuation of a :class:`~bayesphys.gp_pde.GPPDESolver` (Fang et al., ICLR
2024, GP-HM): the spectral-mixture kernels are functions of the continuous coordinates, so the
hyperparameters fitted on one grid are a valid start on another
(:meth:`~bayesphys.gp_pde.GPPDESolver.warm_start_from`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .model import GPPDESolver

__all__ = ["copy_hyperparameters"]


def copy_hyperparameters(model: GPPDESolver, other: GPPDESolver) -> None:
    r"""Copy the kernel hyperparameters of ``other`` into ``model`` (and :math:`\tau_{1,2}`
    when ``model`` learns them, ``nugget=None``), then reset ``model``'s field to zero. Both
    solvers must have the same dimension, ``num_mixtures`` and ``kind`` (a ``ValueError``
    naming ``other`` otherwise); the grids may differ."""
    if len(other.kernels) != len(model.kernels):
        raise ValueError(f"other: expected a {model.dim}-D solver, received a {other.dim}-D one")
    q, qo = model.config["num_mixtures"], other.config["num_mixtures"]
    if qo != q:
        raise ValueError(
            f"other: expected a solver with num_mixtures={q} (this one's), received "
            f"num_mixtures={qo}"
        )
    k, ko = model.config["kind"], other.config["kind"]
    if ko != k:  # same parameter names, different meaning (e.g. a length scale's form)
        raise ValueError(
            f"other: expected a solver with kind={k!r} (this one's), received kind={ko!r}"
        )
    model.kernels.load_state_dict(other.kernels.state_dict())
    with torch.no_grad():
        if model.config.get("nugget") is None:
            model.log_tau_b.copy_(other.log_tau_b.detach())
            model.log_tau_pde.copy_(other.log_tau_pde.detach())
    model.u = torch.zeros_like(model.u)
    model._solved_key = None
