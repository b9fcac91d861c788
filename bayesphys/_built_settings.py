"""Settings a model reads at construction only (its weights' shapes, a grid, an operator),
kept as they were when it was built (:func:`shape_settings`) and compared with its config
before it is used or saved (:func:`check_built_settings`, :func:`check_shape_settings`): a
setting assigned afterwards would leave the live model and its checkpoint two models under
one name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["check_built_settings", "check_shape_settings", "shape_settings"]


def _setting(config: Any, name: str) -> Any:
    return config[name] if isinstance(config, Mapping) else getattr(config, name)


def shape_settings(config: Any, names: Iterable[str]) -> dict[str, Any]:
    """The values of the settings ``names`` of ``config`` (a dataclass or a mapping) that fix a
    model's weight shapes, kept at construction for :func:`check_shape_settings`."""
    return {k: _setting(config, k) for k in names}


def check_shape_settings(config: Any, built: Mapping[str, Any], model: str) -> None:
    """Refuse to save a model whose ``config`` no longer describes its weights: a setting that
    fixed their shapes (``built``, from :func:`shape_settings`) was assigned after construction,
    so a load would rebuild other modules and refuse the file (the weights were written into a
    checkpoint nothing could read)."""
    _refuse_changed(
        config,
        built,
        f"save: config {{now}} was assigned after the {model} was built with {{was}}, which "
        "fixed its weights' shapes: a checkpoint with these settings could not be loaded. "
        "Set them back to save this model, or build a new one with them",
    )


def check_built_settings(config: Any, built: Mapping[str, Any], model: str, where: str) -> None:
    """Refuse to use (``where``: ``"fit"``, ``"posterior"``, ``"save"``, ...) a model whose
    ``config`` no longer describes it: a setting read only at construction (``built``, from
    :func:`shape_settings`: e.g. a grid, an operator or a time step derived from it) was
    assigned afterwards. The live model would go on with the old value while a checkpoint
    would load with the new one: two models under one name, silently."""
    _refuse_changed(
        config,
        built,
        f"{where}: config {{now}} was assigned after the {model} was built with {{was}}, "
        "which it read at construction only: this model still uses the old value, while "
        "a checkpoint would load with the new one. Set it back, or build a new model with it",
    )


def _refuse_changed(config: Any, built: Mapping[str, Any], message: str) -> None:
    """``ValueError(message)`` (its ``{now}`` / ``{was}`` filled with the changed settings'
    current and built values) when a setting of ``built`` differs in ``config``."""
    changed = {k: v for k, v in built.items() if _setting(config, k) != v}
    if changed:
        now = ", ".join(f"{k}={_setting(config, k)!r}" for k in changed)
        was = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        raise ValueError(message.format(now=now, was=was))
