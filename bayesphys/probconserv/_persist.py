"""Checkpoints of a :class:`~bayesphys.probconserv.ProbConserv` and their exact restore."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._built_settings import check_shape_settings
from .._checkpoint import load_checkpoint, save_checkpoint
from .._checkpoint_rebuild import rebuilding, refuse_unknown, require_entries
from .._checks import check_int, check_real
from .._device import model_device, resolve_dtype
from .._process_state import streams_kept
from ..problems.gpme import PROBLEM_CLASSES
from ._config import ANP_ONLY, GP_ONLY, ProbConservConfig, checked_config
from ._inputs import saved_problem
from ._trained_range import checked_record
from .calibration import HybridCalibration

if TYPE_CHECKING:
    from .model import ProbConserv


def save_probconserv(model: ProbConserv, path: str | Path) -> Path:
    """Checkpoint (config + Step-1 weights); :func:`load_probconserv` restores it exactly. The
    problem is saved by its family (one of ``PROBLEM_CLASSES``) and fields; a problem of another
    class is refused before anything is written (it could not be rebuilt)."""
    if type(model.problem) not in PROBLEM_CLASSES:
        raise ValueError(
            f"problem: a {type(model.problem).__name__} cannot be saved (a checkpoint rebuilds "
            f"its problem from one of {[c.__name__ for c in PROBLEM_CLASSES]} and its fields)"
        )
    check_shape_settings(model.config, getattr(model, "_shape_settings", {}), "ProbConserv")
    check_loadable_config(model)
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
    # the parameters Step 1 was trained on (None before a fit; older files lack it: no
    # out-of-range warning); written always, as the loader's list of entries is the saved keys
    rec = getattr(model, "_trained_params", None)
    state["trained_params"] = None if rec is None else list(rec)
    if model._calibrated_at not in (None, model.steps_done):
        # a calibration made for earlier weights: a load keeps warning about it (written only
        # then, so the files of calibrated or uncalibrated models are as before)
        state["calibrated_at"] = model._calibrated_at
    return save_checkpoint(path, kind=model.kind, config=asdict(model.config), state=state)


def check_loadable_config(model: ProbConserv) -> None:
    """Refuse a ``model.config`` that :func:`load_probconserv` would refuse (a setting assigned
    after construction, e.g. ``config.covariance = "diagonal"``), before anything is written:
    the settings go through the constructor's checks as a load passes them."""
    cfg: dict[str, Any] = asdict(model.config)
    cfg.pop("problem")
    anp = cfg.get("step1") == "anp"
    for name in GP_ONLY if anp else ANP_ONLY:  # a load drops the other model's settings
        cfg[name] = None
    if not anp and not cfg.get("softc_weight"):  # and a plain GP's SoftC points: the default
        cfg["softc_points"] = ProbConservConfig.__dataclass_fields__["softc_points"].default
    try:
        checked_config(model.problem, dtype=None, **cfg)
    except (TypeError, ValueError) as err:
        raise type(err)(
            f"save: config {err}; a checkpoint with these settings could not be loaded"
        ) from None


#: the state entries :func:`save_probconserv` writes
_STATE_KEYS = frozenset(
    {
        "net",
        "steps_done",
        "train_rng",
        "train_rng_device",
        "dtype",
        "var_scale",
        "calibration",
        "problem",
        "problem_class",
        "calibrated_at",
        "trained_params",
    }
)


def load_probconserv(
    cls: type[ProbConserv], path: str | Path, *, device: str | torch.device | None = None
) -> ProbConserv:
    """Rebuild a model of class ``cls`` saved with :func:`save_probconserv`, exactly."""
    device = model_device(device)  # the caller's argument, checked before the file's entries
    ck = load_checkpoint(path, kind=cls.kind, map_location="cpu")
    require_entries(ck["config"], path, "settings", ["problem"])
    cfg: dict[str, Any] = dict(ck["config"])
    refuse_unknown(ck, path, "settings", cfg, {f.name for f in fields(ProbConservConfig)})
    st = ck["state"]
    # older files lack the later entries (read with their defaults below)
    require_entries(st, path, "state entries", ["net", "steps_done", "dtype"])
    refuse_unknown(ck, path, "state entries", st, _STATE_KEYS)
    # settings the other Step-1 model ignores (older checkpoints stored whatever was given)
    for name in GP_ONLY if cfg.get("step1", "anp") == "anp" else ANP_ONLY:
        cfg.pop(name, None)
    # a plain GP's SoftC points: stored, and ignored, by files from before SoftC-GP (which
    # had softc_weight 0); a SoftC-GP's are its own
    if cfg.get("step1", "anp") != "anp" and not cfg.get("softc_weight"):
        cfg.pop("softc_points", None)
    with rebuilding(path, cls.kind):
        dtype = resolve_dtype(st["dtype"])
        problem = saved_problem(cfg.pop("problem"), st)
        # an unseeded build draws initial weights from the global streams; the file's replace
        # them, and loading leaves the caller's streams as they were
        with streams_kept(device):
            model = cls(problem, device=device, dtype=dtype, **cfg)
        model.net.load_state_dict(st["net"])
        model.net.eval()  # ready to predict, as a fit leaves it
        model.steps_done = check_int("steps_done", st["steps_done"], minimum=0)
        # older checkpoints, or a stream of another device type (a CUDA generator's state is
        # not a CPU one's): the seeded stream after the weights, as a fresh build has
        rng = st.get("train_rng")
        same = st.get("train_rng_device") in (None, model.device.type)
        if rng is not None and model._train_rng is not None and same:
            model._train_rng.set_state(rng)
        # a calibration's variance multiplier: > 0 (a negative one failed later in the
        # posterior with a bare "math domain error")
        model.var_scale = check_real("var_scale", st.get("var_scale", 1.0), minimum=0, strict=True)
        cal = st.get("calibration")
        model.calibration = None if cal is None else HybridCalibration.from_state(cal)
        # the step the calibration was fitted at: the saved model's own unless it was written
        # (a calibration made for earlier weights)
        calibrated = model.calibration is not None or model.var_scale != 1.0
        at = st.get("calibrated_at", model.steps_done if calibrated else None)
        model._calibrated_at = None if at is None else check_int("calibrated_at", at, minimum=0)
        model._trained_params = checked_record(st.get("trained_params"))
    return model
