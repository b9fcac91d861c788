"""Checkpoint format of a :class:`~bayesphys.neural_process.RandomGridNP` (Vadeboncoeur et al.,
ICML 2023): the settings and state entries :meth:`~bayesphys.neural_process.RandomGridNP.save`
writes, the checks a load applies to them before it rebuilds anything, the problem they
rebuild and the state a rebuilt model is given back.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from .._checkpoint import cpu_copy
from .._checkpoint_rebuild import refuse_unknown, require_entries
from .._checks import check_int, check_real
from .._files import user_path
from .config import PROBLEMS, RGNPConfig, get_problem

__all__ = [
    "KIND",
    "check_save_path",
    "checkpoint_settings",
    "read_checkpoint",
    "saved_calibration_step",
    "saved_problem",
    "restore_state",
    "generator_device",
    "model_state",
]

#: the ``kind`` of a RandomGridNP checkpoint
KIND = "neural_process.RandomGridNP"

#: the settings and state entries :meth:`RandomGridNP.save` writes (``grid`` only for a grid
#: with a state)
_CONFIG_KEYS = frozenset({"problem", "problem_fields", "config", "dtype", "seed"})
_STATE_KEYS = frozenset(
    {
        "modules",
        "optimizer",
        "step_count",
        "generator",
        "generator_device",
        "variance_scale",
        "grid",
        "calibrated_at",
    }
)


def check_save_path(path: Any) -> None:
    """Refuse a ``path`` that is not a ``str`` or ``os.PathLike`` (``TypeError``, by the core's
    :func:`~bayesphys._files.user_path`) or is an existing folder (``IsADirectoryError``, as
    every model's save; ``~`` expanded first)."""
    if user_path(path).is_dir():
        raise IsADirectoryError(f"path: expected a file name, received the folder {path}")


def checkpoint_settings(
    problem: Any, config: RGNPConfig, dtype: torch.dtype, seed: int | None
) -> dict[str, Any]:
    """The settings a checkpoint stores beside the state: the problem (by name and fields),
    the configuration, dtype and seed. A problem that is not exactly one of :data:`PROBLEMS`
    is refused: a load could not rebuild it."""
    family = PROBLEMS.get(getattr(problem, "name", None))
    if family is None or type(problem) is not family:
        # load rebuilds the problem from its name and fields: a subclass came back as its
        # base class, its overridden residual silently replaced by the base's
        raise ValueError(
            f"problem: a {type(problem).__name__} cannot be saved (a checkpoint rebuilds "
            f"its problem as one of {sorted(c.__name__ for c in PROBLEMS.values())} from its "
            f"name and fields, without the "
            f"subclass's methods); keep the weights with model.state() instead"
        )
    return {
        "problem": problem.name,
        # the problem's own settings (prior boxes, sigma_y, ...): a customised problem
        # instance must come back as it was, not as the default of its name
        "problem_fields": dataclasses.asdict(problem),
        "config": config.to_dict(),
        "dtype": str(dtype),
        "seed": seed,
    }


def read_checkpoint(
    ck: dict[str, Any], path: Any
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The settings, state entries, :class:`RGNPConfig` settings and variance scales of the
    checkpoint ``ck`` read from ``path``, refused (naming ``path``) when an entry a load reads
    is missing or one this release does not know is present."""
    c, st = ck["config"], ck["state"]
    # problem_fields, generator_device, variance_scale and grid: absent from older files
    require_entries(c, path, "settings", ["problem", "config", "dtype", "seed"])
    refuse_unknown(ck, path, "settings", c, _CONFIG_KEYS)
    require_entries(st, path, "state entries", ["modules", "optimizer", "step_count", "generator"])
    refuse_unknown(ck, path, "state entries", st, _STATE_KEYS)
    require_entries(c["config"], path, "RGNPConfig settings", [])  # a dict
    cfg = dict(c["config"])
    if not cfg.get("learn_sigma_r", False):  # stored, and ignored, before it was refused
        cfg.pop("sigma_r_lr_mult", None)
    # a newer release's settings: refused by name (a raw TypeError named no version)
    refuse_unknown(ck, path, "settings", cfg, {f.name for f in dataclasses.fields(RGNPConfig)})
    scales = st.get("variance_scale", {})
    require_entries(scales, path, "variance scales", [])  # a dict
    refuse_unknown(ck, path, "variance scales", scales, ("field", "parameters"))
    return c, st, cfg, scales


def saved_problem(ck: dict[str, Any], path: Any, settings: dict[str, Any]) -> Any:
    """The problem of checkpoint ``settings``: the one of its name, with the saved fields
    (refused when unknown to this release) when the file has them."""
    problem = get_problem(settings["problem"])
    if settings.get("problem_fields"):  # absent in checkpoints written before it was saved
        known = {f.name for f in dataclasses.fields(type(problem))}
        refuse_unknown(ck, path, "problem fields", settings["problem_fields"], known)
        problem = type(problem)(**settings["problem_fields"])
    return problem


def restore_state(
    state: dict[str, Any],
    scales: dict[str, Any],
    modules: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    grid: Any,
) -> tuple[int, dict[str, float]]:
    """Load the saved ``state`` into a freshly built model's ``modules``, ``optimizer``, batch
    ``generator`` (when saved from a device of its kind) and ``grid`` (when it has a state);
    returns the steps taken and the variance multipliers ``scales``, checked."""
    modules.load_state_dict(state["modules"])
    optimizer.load_state_dict(state["optimizer"])
    step_count = check_int("step_count", state["step_count"], minimum=0)
    if generator_device(state) == generator.device.type:
        generator.set_state(state["generator"])
    if "grid" in state:
        grid.load_state_dict(state["grid"])
    # a calibration's variance multipliers are > 0 (a 0 or NaN one gave zero or NaN
    # variances)
    return step_count, {
        k: check_real(f"variance_scale[{k!r}]", v, minimum=0, strict=True)
        for k, v in scales.items()
    }


def saved_calibration_step(
    state: dict[str, Any], step_count: int, scales: dict[str, float]
) -> dict[str, int]:
    """The ``step_count`` at which each saved variance scale in force was fitted: the saved
    one where it was made for earlier weights (only those are written), else the saved
    model's own (also in older files)."""
    at = {k: step_count for k, v in scales.items() if v != 1.0}
    stale = state.get("calibrated_at", {})
    if not isinstance(stale, dict) or set(stale) - {"field", "parameters"}:
        raise ValueError(
            f"state['calibrated_at']: expected a dict with keys among 'field', 'parameters', "
            f"received {stale!r}"
        )
    at.update({k: check_int(f"calibrated_at[{k!r}]", v, minimum=0) for k, v in stale.items()})
    return at


def generator_device(state: dict[str, Any]) -> str:
    """Device type of the batch generator saved in ``state`` (older checkpoints do not record
    it: a CPU generator's state has the size of a fresh CPU generator's)."""
    if "generator_device" in state:
        return str(state["generator_device"])
    return "cpu" if state["generator"].numel() == torch.Generator().get_state().numel() else "cuda"


def model_state(model: Any) -> dict[str, Any]:
    """The state entries :meth:`~bayesphys.neural_process.RandomGridNP.state` returns for
    ``model`` (a ``RandomGridNP``): weights and optimiser state (CPU copies), step count,
    batch stream, GICNet grid state, variance scales, and the steps the scales in force were
    fitted at where those differ from the current one."""
    st = {
        "modules": cpu_copy(model._modules().state_dict()),
        "optimizer": cpu_copy(model.optimizer.state_dict()),
        "step_count": model.step_count,
        "generator": model.generator.get_state(),
        "generator_device": model.generator.device.type,
        "variance_scale": dict(model.variance_scale),
    }
    stale = {k: v for k, v in model._calibrated_at.items() if v != model.step_count}
    if stale:
        # scales made for earlier weights: a load keeps warning about them (written only
        # then, so the files of calibrated or uncalibrated models are as before)
        st["calibrated_at"] = stale
    if hasattr(model.grid, "state_dict"):
        st["grid"] = model.grid.state_dict()
    return st
