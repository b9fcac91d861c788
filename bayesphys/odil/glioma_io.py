"""Checkpoints of a :class:`~bayesphys.odil.GliomaModel` and models of synthetic patients."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._checkpoint import (
    load_checkpoint,
    rebuilding,
    refuse_unknown,
    require_entries,
    save_checkpoint,
)
from .._checks import check_bool, check_keys
from .._device import model_device, resolve_dtype
from ..problems.fisher_kolmogorov import SCHEMES
from .glioma_inputs import CONFIG_KEYS, checked_settings

if TYPE_CHECKING:
    from .glioma import GliomaModel


def save_glioma(model: GliomaModel, path: str | Path) -> Path:
    """Write ``model`` (maps, labels, focus guess, fitted posterior, recalibration) to ``path``;
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
        "dtype": str(model.dtype),
    }
    return save_checkpoint(path, kind=model.kind, config=model.config, state=state)


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
    {"wm", "gm", "labels", "pet", "focus_init", "theta", "theta_cov", "recalibration", "dtype"}
)


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
    posterior (``theta``, ``theta_cov``) and recalibration map are checked as a fit and
    :meth:`~GliomaModel.recalibrate` would have made them."""
    device = model_device(device)  # the caller's argument, checked before the file's entries
    ck = load_checkpoint(path, kind=cls.kind)
    cfg, st = ck["config"], ck["state"]
    require_entries(st, path, "state entries", sorted(_STATE_KEYS - {"recalibration"}))
    refuse_unknown(ck, path, "state entries", st, _STATE_KEYS)
    require_entries(cfg, path, "settings", _REQUIRED_SETTINGS)
    with rebuilding(path, cls.kind):
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
    if theta is None:
        if cov is not None or recal is not None:
            raise ValueError(
                f"path: {path} holds a posterior covariance or recalibration map without the "
                "fitted theta (state['theta'] is None)"
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
    return model
