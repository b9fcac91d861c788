"""Checkpoints of a :class:`~bayesphys.probconserv.ProbConserv` and their exact restore."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._model import load_checkpoint, refuse_unknown, save_checkpoint
from ..problems.gpme import PROBLEM_CLASSES
from ._config import ANP_ONLY, GP_ONLY, ProbConservConfig
from ._inputs import saved_problem
from .calibration import HybridCalibration

if TYPE_CHECKING:
    from .model import ProbConserv


def save_probconserv(model: ProbConserv, path: str | Path) -> Path:
    """Checkpoint (config + Step-1 weights); :func:`load_probconserv` restores it exactly. The problem
    is saved by its family (one of ``PROBLEM_CLASSES``) and fields; a problem of another
    class is refused before anything is written (it could not be rebuilt)."""
    if type(model.problem) not in PROBLEM_CLASSES:
        raise ValueError(
            f"problem: a {type(model.problem).__name__} cannot be saved (a checkpoint rebuilds "
            f"its problem from one of {[c.__name__ for c in PROBLEM_CLASSES]} and its fields)"
        )
    state = {
        "net": model.net.state_dict(),
        "steps_done": model.steps_done,
        # where the training's random draws stand, so a loaded model trains on exactly
        "train_rng": None if model._train_rng is None else model._train_rng.get_state(),
        "train_rng_device": None if model._train_rng is None else model._train_rng.device.type,
        "dtype": str(model.dtype),
        "var_scale": model.var_scale,
        "calibration": None if model.calibration is None else model.calibration.state(),
        # the problem's settings (a customised one, e.g. another train_range or table_time)
        "problem": {f.name: getattr(model.problem, f.name) for f in fields(model.problem)},
        # its family (a renamed problem is rebuilt from it, not from the name)
        "problem_class": type(model.problem).__name__,
    }
    return save_checkpoint(path, kind=model.kind, config=asdict(model.config), state=state)


def load_probconserv(
    cls: type[ProbConserv], path: str | Path, *, device: str | torch.device | None = None
) -> ProbConserv:
    """Rebuild a model of class ``cls`` saved with :func:`save_probconserv`, exactly."""
    ck = load_checkpoint(path, kind=cls.kind, map_location="cpu")
    cfg: dict[str, Any] = dict(ck["config"])
    refuse_unknown(ck, path, "settings", cfg, {f.name for f in fields(ProbConservConfig)})
    # settings the other Step-1 model ignores (older checkpoints stored whatever was given)
    for name in GP_ONLY if cfg.get("step1", "anp") == "anp" else ANP_ONLY:
        cfg.pop(name, None)
    dtype = getattr(torch, ck["state"]["dtype"].removeprefix("torch."))
    problem = saved_problem(cfg.pop("problem"), ck["state"])
    model = cls(problem, device=device, dtype=dtype, **cfg)
    model.net.load_state_dict(ck["state"]["net"])
    model.steps_done = int(ck["state"]["steps_done"])
    # older checkpoints, or a stream of another device type (a CUDA generator's state is
    # not a CPU one's): the seeded stream after the weights, as a fresh build has
    rng = ck["state"].get("train_rng")
    same = ck["state"].get("train_rng_device") in (None, model.device.type)
    if rng is not None and model._train_rng is not None and same:
        model._train_rng.set_state(rng)
    model.var_scale = float(ck["state"].get("var_scale", 1.0))
    cal = ck["state"].get("calibration")
    model.calibration = None if cal is None else HybridCalibration.from_state(cal)
    return model
