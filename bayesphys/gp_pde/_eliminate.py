"""The exact eliminator of the field :math:`U` for a :class:`~.model.GPPDESolver`, and the
re-solve of the stored field.

Fang et al., ICLR 2024 (GP-HM) optimise :math:`U` jointly with the hyperparameters; we eliminate it
exactly at every step: :class:`~.solve.KronSolve` (linear operators, prior metric, 1-/2-D grids),
:class:`~.nonlinear.PicardKronSolve` or :class:`~.gauss_newton.GaussNewtonKronSolve` (2-D
Allen-Cahn), :class:`~.dense_solve.DenseSolve` otherwise (at most 6000 grid points).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from ._errors import NumericalFailure
from .dense_solve import DenseSolve
from .gauss_newton import GaussNewtonKronSolve
from .nonlinear import PicardKronSolve
from .operator import detach_factors, with_eigen
from .solve import KronSolve

if TYPE_CHECKING:
    from .model import GPPDESolver


def eliminator(model: GPPDESolver, factors: Any, *, reuse: bool = False) -> tuple[Any, Any]:
    """Exact eliminator of ``U`` for the current hyperparameters (detached): ``(solver, run)``.

    ``run()`` solves from the stored field and returns ``U`` ``[n_1..n_d]`` (it does not store
    it). ``reuse=True`` (posterior): when the stored field was solved at the current
    hyperparameters (``model._fresh()``), ``run()`` only linearises the solver at it and returns
    it, so an unconverged nonlinear solve is not continued (no second, different answer).
    """
    tau2 = float(model.log_tau_pde.detach().exp())
    gamma = model.config["lam_b"] * float(model.log_tau_b.detach().exp())
    # exp over/underflow of log tau: inf, or 0 (which GaussNewtonKronSolve refuses)
    if not all(math.isfinite(v) and v > 0 for v in (tau2, gamma)):
        raise NumericalFailure(
            f"tau: expected finite positive precisions, received tau2={tau2}, gamma={gamma}"
        )
    fd = detach_factors(factors)
    keep = reuse and model._fresh()
    if model._structured:
        fe = with_eigen(fd, model.op)
        if model.op.cubic:
            opts = dict(model.config.get("solver_options") or {})
            if model.config.get("nonlinear_solver", "picard") == "gauss-newton":
                gs = GaussNewtonKronSolve(fe, model.op, tau2, gamma, **opts)

                def run_gn():
                    u0 = model.u
                    if keep:
                        gs.linearise(u0)
                        return u0
                    if not bool(u0.abs().sum() > 0):  # no previous field: Picard start
                        u0 = PicardKronSolve(fe, model.op, tau2, gamma).solve(model.f, model.g)
                    return gs.solve(model.f, model.g, u0=u0)

                return gs, run_gn
            ps = PicardKronSolve(fe, model.op, tau2, gamma, **opts)
            if keep:
                return ps, lambda: ps.linearise(model.u)
            return ps, lambda: ps.solve(model.f, model.g, u0=model.u)
        ks = KronSolve(fe, model.op, tau2, gamma)
        if keep:  # linear: the covariance does not depend on U
            return ks, lambda: model.u
        return ks, lambda: ks.solve(model.f, model.g)
    if math.prod(model.shape) > 6000:
        # reached from posterior()/solve_field() only (fit() then optimises U jointly), and
        # for method='ref' too: naming method='ref' as the remedy would be wrong
        raise NotImplementedError(
            f"no exact solver for {model.config['equation']} with weighting "
            f"{model.config['weighting']!r} on a {model.shape} grid "
            f"({math.prod(model.shape)} > 6000 points; the dense solve is limited to 6000 and "
            "the Kronecker solve needs weighting='prior' on a 1-D or 2-D grid): fit() optimises "
            "U jointly, but posterior() and solve_field() need an exact solver; use "
            "weighting='prior' or a grid of at most 6000 points"
        )
    ds = DenseSolve(fd, model.op, model.config["weighting"])
    if keep:
        return ds, lambda: ds.linearise(model.u, tau2, gamma)
    return ds, lambda: ds.solve(model.f, model.g, tau2, gamma, u0=model.u)


def resolve_field(model: GPPDESolver, *, newton: bool) -> dict[str, Any]:
    """Re-solve and store the field of ``model`` at its current hyperparameters (see
    :meth:`~.model.GPPDESolver.solve_field`); returns the solver's statistics."""
    with torch.no_grad():
        fac = detach_factors(model._factors())
        solver, run = model._solver(fac)
        if isinstance(solver, PicardKronSolve):
            solver.newton = newton
        model._set_field(run())
    stats = {"solver": type(solver).__name__}
    for k in ("iterations", "newton_steps", "krylov_iters", "cg_iters", "converged", "stop_reason"):
        if hasattr(solver, k):
            stats[k] = getattr(solver, k)
    if getattr(solver, "step_norms", None):
        stats["last_update"] = solver.step_norms[-1]
    return stats
