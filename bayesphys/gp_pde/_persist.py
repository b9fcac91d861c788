"""Checkpoint state of a :class:`~.model.GPPDESolver` and its exact restore."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._built_settings import shape_settings
from .._checkpoint import load_checkpoint
from .._checkpoint_rebuild import quiet_rebuild, rebuilding, refuse_unknown, require_entries
from .._device import model_device
from ..problems.gp_pde import get_problem
from ._setup import BUILT_SETTINGS

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
# the settings a load reads without a default (later ones are absent from older files)
_REQUIRED_SETTINGS = (
    "problem",
    "equation",
    "beta",
    "num_mixtures",
    "kind",
    "method",
    "weighting",
    "lam_b",
    "jitter",
    "freq_scale",
)


def load_solver(cls: type[GPPDESolver], path: str | Path, *, device=None) -> GPPDESolver:
    """Rebuild a solver of class ``cls`` from the checkpoint at ``path``, exactly as saved."""
    device = model_device(device)  # the caller's argument, checked before the file's entries
    ck = load_checkpoint(path, kind="gp_pde.GPPDESolver", map_location="cpu")
    c, s = ck["config"], ck["state"]
    require_entries(s, path, "state entries", sorted(_STATE_KEYS - {"solved"}))
    refuse_unknown(ck, path, "state entries", s, _STATE_KEYS)
    require_entries(c, path, "settings", _REQUIRED_SETTINGS)
    with rebuilding(path, "gp_pde.GPPDESolver"):
        return _rebuild(cls, ck, path, device)


def _rebuild(cls: type[GPPDESolver], ck: dict[str, Any], path: Any, device) -> GPPDESolver:
    """The solver of the checked checkpoint ``ck`` (its entries' types and values are checked
    by the constructor and the restores here)."""
    c, s = ck["config"], ck["state"]
    axes = s["axes"]
    with rebuilding(path, "gp_pde.GPPDESolver", "state['axes']"):
        shape = tuple(a.numel() for a in axes)  # one 1-d tensor of coordinates per dimension
    bgrid = torch.zeros(shape, dtype=s["g"].dtype)
    # boundary values are restored directly below; the grid tensor only fixes shapes
    # its settings were warned about when the model was built: solver_options that it does
    # not read are kept in its config, and each load() repeated the warning at this line
    # (the config always holds a beta, 1.0 by default, which the model was built with)
    with quiet_rebuild():
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
    # the file's settings; one an older file lacks is the default the model was rebuilt with
    # (absent, it was not refused when assigned afterwards, e.g. a nugget to learned
    # precisions)
    model.config = {**model.config, **c}
    model._built = shape_settings(model.config, BUILT_SETTINGS)
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
