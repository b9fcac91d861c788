"""Checkpoints of a :class:`~bayesphys.odil.GliomaModel` and models of synthetic patients."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._checkpoint import load_checkpoint, save_checkpoint
from .._checkpoint_rebuild import quiet_rebuild, rebuilding, refuse_unknown, require_entries
from .._checks import check_bool, check_int, check_keys, check_real
from .._device import model_device, resolve_dtype
from .._model import FitResult
from ..problems.fisher_kolmogorov import SCHEMES
from .glioma_inputs import CONFIG_KEYS, checked_settings

if TYPE_CHECKING:
    from .glioma import GliomaModel


def save_glioma(model: GliomaModel, path: str | Path) -> Path:
    """Write ``model`` (maps, labels, focus guess, fitted posterior, recalibration and the
    :class:`~bayesphys.FitResult` of the fit behind it, ``model.result``) to ``path``;
    a ``config`` value :func:`load_glioma` would refuse (assigned after construction, e.g.
    ``th_up`` below ``th_down``) is refused first, by name."""
    check_loadable_config(model)
    state = {
        "wm": model.wm.cpu(),
        "gm": model.gm.cpu(),
        "labels": model.labels.cpu(),
        "pet": None if model.pet is None else model.pet.cpu(),
        "focus_init": model.focus_init.cpu(),
        "theta": None if model.theta is None else model.theta.cpu(),
        "theta_cov": None if model.theta_cov is None else model.theta_cov.cpu(),
        "recalibration": None
        if model.recalibration is None
        else [v.cpu() for v in model.recalibration],
        "result": _result_state(model.result),
        "dtype": str(model.dtype),
    }
    return save_checkpoint(path, kind=model.kind, config=model.config, state=state)


_RESULT_FIELDS = ("loss_history", "seconds", "converged", "steps", "message", "extra")


def _result_state(result: FitResult | None) -> dict[str, Any] | None:
    """``model.result`` as plain values (a copy: later edits of the model's result leave the
    saved one alone); ``None`` for an unfitted model."""
    if result is None:
        return None
    return {k: copy.deepcopy(getattr(result, k)) for k in _RESULT_FIELDS}


def _restored_result(entry: Any) -> FitResult:
    """The :class:`~bayesphys.FitResult` of a checkpoint's ``state['result']``, its fields
    checked as a fit makes them."""
    if not isinstance(entry, dict) or set(entry) != set(_RESULT_FIELDS):
        got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise ValueError(f"expected a dict with the entries {list(_RESULT_FIELDS)}, received {got}")
    hist = entry["loss_history"]
    if not isinstance(hist, list):
        raise TypeError(f"loss_history: expected a list, received {type(hist).__name__}")
    for v in hist:  # a diverged fit records no non-finite loss, but a user's may
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"loss_history: expected numbers, received {type(v).__name__}")
    if not isinstance(entry["converged"], bool):
        raise TypeError(f"converged: expected a bool, received {entry['converged']!r}")
    for k, kind in (("message", str), ("extra", dict)):
        if not isinstance(entry[k], kind):
            raise TypeError(f"{k}: expected a {kind.__name__}, received {type(entry[k]).__name__}")
    return FitResult(
        loss_history=hist,
        seconds=check_real("seconds", entry["seconds"], minimum=0.0),
        converged=entry["converged"],
        steps=check_int("steps", entry["steps"], minimum=0),
        message=entry["message"],
        extra=entry["extra"],
    )


def check_loadable_config(model: GliomaModel) -> None:
    """Refuse a ``model.config`` that the constructor, and so :func:`load_glioma`, would
    refuse: the checkpoint would be written and never load."""
    cfg = model.config
    try:
        checked_settings(
            ndim=model.ndim,
            **{k: cfg[k] for k in CONFIG_KEYS if k != "time_scheme"},
            crop_margin_mm=cfg["crop_margin_mm"],
            crop_scale=cfg.get("crop_scale"),
            seed=cfg["seed"],
        )
        if cfg["time_scheme"] not in SCHEMES:
            raise ValueError(
                f"time_scheme: expected one of {SCHEMES}, received {cfg['time_scheme']!r}"
            )
    except (TypeError, ValueError) as err:
        raise type(err)(
            f"save: config {err}; a checkpoint with these settings could not be loaded"
        ) from None


def glioma_from_patient(
    cls: type[GliomaModel], patient: dict, *, use_pet: bool = False, **kwargs: Any
) -> GliomaModel:
    """A model of one patient dict as :func:`~bayesphys.problems.glioma.synthetic_patient`
    returns it (``wm``, ``gm``, ``labels``, ``spacing``, ``th_up``, ``th_down``, the
    patient's ``t_end`` and ``dg_ratio`` when it has them and, with ``use_pet``, ``pet``);
    ``kwargs`` go to the constructor (``device``, ``seed``, ...) and override the
    patient's settings."""
    use_pet = check_bool("use_pet", use_pet)  # a truthy "no" used the PET map
    need = ("wm", "gm", "labels", "spacing", "th_up", "th_down") + ("pet",) * use_pet
    check_keys("patient", patient, need, None, hint="a synthetic_patient dict")
    if use_pet and patient["pet"] is None:
        raise ValueError(
            "patient['pet']: expected a PET map with use_pet=True, received None "
            "(a synthetic_patient dict made with a PET map)"
        )
    if "pet" in kwargs:
        raise ValueError("pet: pass use_pet=True to use the patient's PET map")
    settings = {k: patient[k] for k in ("spacing", "th_up", "th_down")}
    # a patient simulated over another horizon or ratio was fitted with the defaults
    settings.update({k: patient[k] for k in ("t_end", "dg_ratio") if k in patient})
    settings.update(kwargs)
    return cls(
        patient["wm"],
        patient["gm"],
        patient["labels"],
        pet=patient["pet"] if use_pet else None,
        **settings,
    )


_STATE_KEYS = frozenset(
    {
        "wm",
        "gm",
        "labels",
        "pet",
        "focus_init",
        "theta",
        "theta_cov",
        "recalibration",
        "result",
        "dtype",
    }
)
# entries added later: absent from older files, read as None
_LATER_STATE = frozenset({"recalibration", "result"})


# the settings a load reads without a default: the constructor's, less those added later
# (absent from older files, read with their defaults), and the crop margin and seed
_LATER_SETTINGS = ("model_error", "time_scheme", "n_foci")
_REQUIRED_SETTINGS = (
    *(k for k in CONFIG_KEYS if k not in _LATER_SETTINGS),
    "crop_margin_mm",
    "seed",
)


def load_glioma(
    cls: type[GliomaModel], path: str | Path, *, device: str | torch.device | None = None
) -> GliomaModel:
    """Restore a model written by :func:`save_glioma` exactly (on ``device``); its fitted
    posterior (``theta``, ``theta_cov``), recalibration map and fit result are checked as a
    fit and :meth:`~GliomaModel.recalibrate` would have made them (a file written before the
    result was saved loads with ``result = None``)."""
    device = model_device(device)  # the caller's argument, checked before the file's entries
    ck = load_checkpoint(path, kind=cls.kind)
    cfg, st = ck["config"], ck["state"]
    require_entries(st, path, "state entries", sorted(_STATE_KEYS - _LATER_STATE))
    refuse_unknown(ck, path, "state entries", st, _STATE_KEYS)
    require_entries(cfg, path, "settings", _REQUIRED_SETTINGS)
    with rebuilding(path, cls.kind), quiet_rebuild():
        model = cls(
            st["wm"],
            st["gm"],
            st["labels"],
            pet=st["pet"],
            focus_init=st["focus_init"],
            spacing=cfg["spacing"],
            th_up=cfg["th_up"],
            th_down=cfg["th_down"],
            t_end=cfg["t_end"],
            dg_ratio=cfg["dg_ratio"],
            pet_scale=cfg["pet_scale"],
            pet_sigma=cfg["pet_sigma"],
            seg_sigma=cfg["seg_sigma"],
            noise_corr_mm=cfg["noise_corr_mm"],
            model_error=cfg.get("model_error", 0.0),
            d_max=cfg["d_max"],
            time_scheme=cfg.get("time_scheme", "euler"),
            prior=cfg["prior"],
            n_foci=cfg.get("n_foci", 1),
            crop_margin_mm=cfg["crop_margin_mm"],
            crop_scale=cfg.get("crop_scale"),
            device=device,
            dtype=resolve_dtype(st["dtype"]),
            seed=cfg["seed"],
        )
    refuse_unknown(ck, path, "settings", cfg, model.config)  # a fresh build has every key
    theta, cov, recal = st["theta"], st["theta_cov"], st.get("recalibration")
    result = st.get("result")
    if theta is None:
        if cov is not None or recal is not None or result is not None:
            raise ValueError(
                f"path: {path} holds a posterior covariance, recalibration map or fit result "
                "without the fitted theta (state['theta'] is None)"
            )
        return model
    with rebuilding(path, cls.kind):
        model.theta = model._theta(theta).to(model.device)  # its shape (2 + K d,)
    with rebuilding(path, cls.kind, "state['theta_cov']"):
        model.theta_cov = cov.to(model.device) if isinstance(cov, torch.Tensor) else cov
        model.theta_posterior()  # square of theta's size, finite, symmetric, PSD
    if recal is not None:
        with rebuilding(path, cls.kind, "state['recalibration']"):
            shift, scale = recal
            model.recalibration = model._recalibration_map(shift, scale)
    if result is not None:
        with rebuilding(path, cls.kind, "state['result']"):
            model.result = _restored_result(result)
    return model
