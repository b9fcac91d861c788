"""Checkpoint state of a :class:`~.model.GPPDESolver` and its exact restore."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._model import load_checkpoint, refuse_unknown
from ..problems.gp_pde import get_problem

if TYPE_CHECKING:
    from .model import GPPDESolver


def solver_state(model: GPPDESolver) -> dict[str, Any]:
    """The tensors and history of ``model`` (on the CPU) that :func:`load_solver` restores."""
    return {
        "kernels": {k: v.detach().cpu() for k, v in model.kernels.state_dict().items()},
        "log_tau_b": model.log_tau_b.detach().cpu(),
        "log_tau_pde": model.log_tau_pde.detach().cpu(),
        "u": model.u.detach().cpu(),
        "axes": [a.cpu() for a in model.axes],
        "f": model.f.cpu(),
        "g": model.g.cpu(),
        "history": model.history,
        # whether ``u`` was solved at these hyperparameters (posterior() then linearises at
        # ``u`` instead of re-solving; a loaded model must do the same)
        "solved": model._fresh(),
    }


_STATE_KEYS = frozenset(
    {"kernels", "log_tau_b", "log_tau_pde", "u", "axes", "f", "g", "history", "solved"}
)


def load_solver(cls: type[GPPDESolver], path: str | Path, *, device=None) -> GPPDESolver:
    """Rebuild a solver of class ``cls`` from the checkpoint at ``path``, exactly as saved."""
    ck = load_checkpoint(path, kind="gp_pde.GPPDESolver", map_location="cpu")
    c, s = ck["config"], ck["state"]
    refuse_unknown(ck, path, "state entries", s, _STATE_KEYS)
    axes = s["axes"]
    shape = tuple(a.numel() for a in axes)
    bgrid = torch.zeros(shape, dtype=s["g"].dtype)
    # boundary values are restored directly below; the grid tensor only fixes shapes
    model = cls(
        None,
        x=axes,
        source=s["f"],
        boundary=bgrid,
        equation=c["equation"],
        beta=c["beta"],
        num_mixtures=c["num_mixtures"],
        kind=c["kind"],
        method=c["method"],
        weighting=c["weighting"],
        lam_b=c["lam_b"],
        jitter=c["jitter"],
        freq_scale=c["freq_scale"],
        zero_component=c.get("zero_component"),
        nugget=c.get("nugget"),
        nonlinear_solver=c.get("nonlinear_solver", "picard"),
        solver_options=c.get("solver_options"),
        device=device,
        dtype=s["f"].dtype,
    )
    refuse_unknown(ck, path, "settings", c, model.config)  # a fresh build has every key we write
    dev = model.device
    model.problem = None if c["problem"] is None else get_problem(c["problem"])
    model.config = dict(c)
    model.g = s["g"].to(dev)
    model.kernels.load_state_dict(s["kernels"])
    with torch.no_grad():
        model.log_tau_b.copy_(s["log_tau_b"])
        model.log_tau_pde.copy_(s["log_tau_pde"])
    model.u = s["u"].to(dev)
    model.history = s["history"]
    if s.get("solved"):
        model._solved_key = model._param_key()
    return model
