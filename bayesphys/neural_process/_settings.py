"""What a :class:`~bayesphys.neural_process.RandomGridNP` is built from (Vadeboncoeur et al.,
ICML 2023): its configuration (a preset of the problem, method and size, or one given, with
keyword overrides), its dtype, and the configuration fields read only at construction, which
may not change afterwards (:func:`check_unchanged`).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from .._checks import did_you_mean
from .._device import DTypeLike, single_or_double
from .config import METHODS, SIZES, RGNPConfig, preset, with_overrides

__all__ = ["model_config", "net_dtype", "built_fields", "check_unchanged"]

#: configuration fields read only when the model is built (networks, grids, optimiser groups
#: and Adam's betas / eps); the rest are read at every step and may change between fits
_SET_AT_CONSTRUCTION = (
    "method",
    "hidden",
    "depth",
    "n_freq",
    "f_min",
    "f_max",
    "train_freq",
    "rank",
    "var_lo",
    "grid",
    "betas",
    "adam_eps",
    "init",
    "sigma_r",
    "learn_sigma_r",
    "inv_lr_mult",
    "sigma_r_lr_mult",
    "gic",
)


def model_config(
    problem: str, method: str | None, config: Any, size: str, overrides: dict[str, Any]
) -> RGNPConfig:
    """The checked configuration of a model of ``problem`` (its name): the preset of
    ``method`` (default ``"RGNP"``) and ``size``, or ``config`` (whose method and sizes those
    arguments may not contradict), with ``overrides`` applied (``gic`` merged)."""
    if method is not None and (not isinstance(method, str) or method not in METHODS):
        raise ValueError(
            f"method: expected one of {list(METHODS)}, received "
            f"{method!r}{did_you_mean(method, list(METHODS))}"
        )
    if not isinstance(size, str) or size not in SIZES:
        raise ValueError(
            f"size: expected one of {sorted(SIZES)}, received "
            f"{size!r}{did_you_mean(size, sorted(SIZES))}"
        )
    if config is None:
        cfg = preset(problem, "RGNP" if method is None else method, size)
    else:
        if not isinstance(config, RGNPConfig):
            raise TypeError(f"config: expected an RGNPConfig, received {type(config).__name__}")
        if method is not None and method != config.method:
            raise ValueError(
                f"method: config= is a {config.method!r} configuration, received method "
                f"{method!r}; drop method= (or pass preset(problem, {method!r}))"
            )
        if size != "full":
            raise ValueError(
                f"size: {size!r} has no effect with config= (the configuration sets every "
                f"size); pass preset(problem, method, {size!r}) as config instead"
            )
        cfg = config
    cfg = with_overrides(cfg, **overrides).validate()  # ``gic``: merged, not replaced
    if not cfg.learn_sigma_r and cfg.sigma_r_lr_mult != 1.0:  # it had no effect
        raise ValueError(
            f"sigma_r_lr_mult: only with learn_sigma_r=True (sigma_r is fixed, no learning "
            f"rate applies), received sigma_r_lr_mult={cfg.sigma_r_lr_mult!r}"
        )
    return cfg


def net_dtype(dtype: DTypeLike) -> torch.dtype:
    """The dtype of a model's networks: ``dtype`` (default float32), float32 or float64."""
    return single_or_double(
        dtype,
        "the objective's Cholesky factorisations need one of them",
        default=torch.float32,
    )


def built_fields(config: RGNPConfig) -> dict[str, Any]:
    """Copies of the fields of ``config`` that the networks, grid and optimiser are built
    from."""
    return {k: copy.deepcopy(getattr(config, k)) for k in _SET_AT_CONSTRUCTION}


def check_unchanged(config: RGNPConfig, built: dict[str, Any], where: str) -> None:
    """``config`` as assigned since construction: checked again (:meth:`RGNPConfig.validate`),
    and the fields the networks, grid and optimiser were built from (``built``) unchanged;
    errors name ``where`` (``"fit"``, ``"save"``)."""
    config.validate()
    changed = {k: v for k, v in built.items() if getattr(config, k) != v}
    if changed:
        old = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        raise ValueError(
            f"{where}: config fields {sorted(changed)} were assigned after the model was "
            f"built, but they set its networks, grid or optimiser at construction (it still "
            f"uses {old}); build a new RandomGridNP with them, or set them back. Fields "
            f"read during training (lr and its schedule, grad_clip, batch, n_points, "
            f"data_batch, qmc_prior, aug_weight, aug_points) may be changed between fits"
        )
