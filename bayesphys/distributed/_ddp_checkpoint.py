"""Checkpoints of data-parallel training, and the checks before a run resumes from one.

Rank 0 writes ``{model, optimizer, epoch, step, world_size, extra, settings}`` atomically and
every rank learns whether it succeeded; :func:`_check_resume` compares the saved ``settings``
(model, optimiser, batch layout, seed) with the resuming run's and names each difference.
Re-exported by :mod:`bayesphys.distributed.ddp`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .._checkpoint import load_checkpoint, save_checkpoint
from .._checks import check_int
from .._stack import user_stacklevel
from .._warning_types import BayesphysRuntimeWarning
from ._process_group import DistContext, _check_ctx, unwrap

__all__ = [
    "CHECKPOINT_KIND",
    "SHUFFLE",
    "SHUFFLE_TAG",
    "save_training_checkpoint",
    "load_training_checkpoint",
]

CHECKPOINT_KIND = "ddp_training"

#: the tag of train_ddp's sampler seed: its base seed is ``stream_seed(seed, SHUFFLE_TAG)``
SHUFFLE_TAG = "train_ddp/shuffle"
#: how train_ddp seeds its sampler, recorded in a checkpoint's settings (built from the tag,
#: so a new tag is a new shuffle, refused on resume); checkpoints whose settings name no
#: shuffle were written when the base seed was ``seed`` itself (:data:`_OLD_SHUFFLE`)
SHUFFLE = f"stream_seed(seed, {SHUFFLE_TAG!r}) + epoch"
_OLD_SHUFFLE = "seed + epoch"


def _check_model_optimizer(model: Any, optimizer: Any) -> None:
    """``model`` a :class:`torch.nn.Module`, ``optimizer`` ``None`` or an optimizer (an object
    with ``state_dict`` and ``load_state_dict``, as :class:`torch.optim.Optimizer`): anything
    else failed with an ``AttributeError`` (``state_dict``), on rank 0 only for a save."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, received {type(model).__name__}")
    if optimizer is not None and not all(
        callable(getattr(optimizer, m, None)) for m in ("state_dict", "load_state_dict")
    ):
        raise TypeError(
            f"optimizer: expected a torch.optim.Optimizer or None, received "
            f"{type(optimizer).__name__}"
        )


def save_training_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    epoch: int,
    step: int,
    ctx: DistContext,
    config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> Path:
    """Rank 0 writes ``{model, optimizer, epoch, step, world_size, extra, settings}``
    atomically (a temporary file beside ``path``, flushed to disk, then renamed); all ranks
    wait. ``settings`` is what :func:`train_ddp` compares before it resumes.

    If rank 0's write fails, rank 0 re-raises its error and every other rank raises a
    ``RuntimeError`` naming it (they used to go on unaware of it, or wait at the next
    collective until the group's timeout).

    ``model`` (a module), ``optimizer`` (an optimizer or ``None``), ``epoch`` and ``step``
    (ints ``>= 0``) and ``ctx`` (a :class:`DistContext`) are checked on every rank before
    anything is written or waited for.
    """
    _check_ctx(ctx)
    _check_model_optimizer(model, optimizer)
    epoch = check_int("epoch", epoch, minimum=0)
    step = check_int("step", step, minimum=0)
    path = Path(path).expanduser()
    failure: BaseException | None = None
    if ctx.is_main:
        try:  # building the state can fail too (e.g. extra not a mapping): inside the try
            state = {
                "model": unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "epoch": int(epoch),
                "step": int(step),
                "world_size": ctx.world_size,
                "extra": dict(extra or {}),
            }
            if settings is not None:
                state["settings"] = dict(settings)
            # atomic, through a temporary name of its own (a fixed ".name.tmp" was shared by
            # two runs writing one path: one published the other's file, the other's rename
            # then failed); a failed write leaves the previous checkpoint as it was
            save_checkpoint(path, kind=CHECKPOINT_KIND, config=dict(config or {}), state=state)
        except BaseException as err:
            failure = err
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        # the barrier, carrying rank 0's outcome to every rank
        news = [None if failure is None else f"{type(failure).__name__}: {failure}"]
        dist.broadcast_object_list(news, src=0)
        if news[0] is not None and failure is None:
            raise RuntimeError(f"checkpoint: rank 0 failed to write {path}: {news[0]}")
    if failure is not None:
        raise failure
    return path


def load_training_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: str | torch.device | None = "cpu",
) -> dict[str, Any]:
    """Load weights (and optimizer state) on every rank; returns the checkpoint's state dict.
    ``model`` must be a module and ``optimizer`` an optimizer or ``None`` (checked before the
    file is read). A checkpoint of another model (other weight names or shapes) or optimizer
    (other parameter groups) is refused with a ``ValueError`` naming the file and the
    differences, before anything is loaded (:func:`load_states`)."""
    _check_model_optimizer(model, optimizer)
    ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=map_location)
    state = ckpt["state"]
    load_states(path, state, model, optimizer)
    return state


def load_states(
    path: Any, state: Any, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> None:
    """Load the checkpoint ``state``'s ``"model"`` weights into ``model`` and its
    ``"optimizer"`` state (when saved) into ``optimizer`` (``None``: not loaded), after
    checking that both fit: the same weight names and shapes, and (an optimizer with
    ``param_groups``) as many groups of as many tensors. A checkpoint of another model or
    optimizer is refused (``ValueError`` naming ``path`` and each difference) before anything
    is loaded: torch's own ``load_state_dict`` copied the weights that fitted before it raised
    for the others (a model left half the file's, half its own) and named no file."""
    target = unwrap(model)
    saved = state.get("model") if isinstance(state, Mapping) else None
    if not isinstance(saved, Mapping):
        raise ValueError(
            f"path: {path} holds no model weights (its 'model' entry is a "
            f"{type(saved).__name__}); the file is damaged or was not written by "
            "save_training_checkpoint"
        )
    own = target.state_dict()
    diff = [f"missing {k!r}" for k in own if k not in saved]
    diff += [f"unexpected {k!r}" for k in saved if k not in own]
    diff += [
        _entry_difference(k, own[k], saved[k])
        for k in own
        if k in saved and not _shape_loads(own[k], saved[k])
    ]
    if diff:
        shown = "; ".join(diff[:5]) + (f"; and {len(diff) - 5} more" if len(diff) > 5 else "")
        raise ValueError(
            f"path: {path} holds the weights of another model ({shown}); nothing was loaded: "
            "build the model the checkpoint was written from"
        )
    opt_state = state.get("optimizer") if optimizer is not None else None
    groups = getattr(optimizer, "param_groups", None)
    saved_groups = opt_state.get("param_groups") if isinstance(opt_state, Mapping) else None
    if isinstance(groups, list) and isinstance(saved_groups, list):
        sizes = [len(g["params"]) for g in groups]
        saved_sizes = [
            len(g.get("params", ())) if isinstance(g, Mapping) else -1 for g in saved_groups
        ]
        if sizes != saved_sizes:
            raise ValueError(
                f"path: {path} holds the state of an optimizer whose parameter groups hold "
                f"{saved_sizes} tensors, this optimizer's {sizes}; nothing was loaded: build "
                "the optimizer over the parameters it was written with"
            )
    try:
        # the optimizer first: torch sets its state only once all of it has been read, so a
        # damaged optimizer state leaves both unchanged (loaded second, it failed after the
        # weights had been copied in); the weights' names and shapes are checked above
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
        target.load_state_dict(saved)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
        # torch's load_state_dict gives its reasons after a first line that names none
        # ("Error(s) in loading state_dict for Sequential:"): all of it, on one line
        detail = " ".join(str(err).split())
        detail = detail if len(detail) <= 500 else detail[:497] + "..."
        raise ValueError(
            f"path: {path}: its states do not load ({type(err).__name__}: {detail}); the file "
            "is damaged or was not written for this model and optimizer"
        ) from err


def _entry_difference(name: str, own: Any, saved: Any) -> str:
    """What keeps the saved entry ``name`` (``saved``) from loading into the model's ``own``
    (one that :func:`_shape_loads` refuses)."""
    if not isinstance(saved, torch.Tensor):
        return f"{name!r} is a {type(saved).__name__}, not a tensor"
    return f"{name!r} of shape {tuple(saved.shape)} (the model's {tuple(own.shape)})"


def _shape_loads(own: Any, saved: Any) -> bool:
    """Whether torch's ``load_state_dict`` takes the saved entry ``saved`` into the model's
    ``own`` as far as shapes go: equal shapes, a ``[1]`` tensor into a 0-dim one (torch's
    compatibility with old files), and anything into or from a lazy module's uninitialised
    parameter (torch materialises it from the file, or judges it itself; reading its shape
    raised before anything was loaded). A saved entry that is not tensor-like where the model
    has a tensor does not load (torch refused it only after loading every other weight);
    other entries that are not tensors are torch's to judge."""
    if isinstance(own, torch.Tensor) and not torch.overrides.is_tensor_like(saved):
        return False
    if not (isinstance(own, torch.Tensor) and isinstance(saved, torch.Tensor)):
        return True
    if torch.nn.parameter.is_lazy(own) or torch.nn.parameter.is_lazy(saved):
        return True
    return saved.shape == own.shape or (own.ndim == 0 and tuple(saved.shape) == (1,))


def _plain(value: Any) -> Any:
    """An optimizer hyperparameter in a form that compares and prints (tensors as numbers)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _optimizer_settings(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's class and the hyperparameters of its parameter groups (not the params)."""
    kind = type(optimizer)
    return {
        "type": f"{kind.__module__}.{kind.__qualname__}",
        "groups": [
            {k: _plain(v) for k, v in group.items() if k != "params"}
            for group in optimizer.param_groups
        ],
    }


def _same(a: Any, b: Any) -> bool:
    """Equality of two settings (tensors and arrays by value, NaN equal to NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        a, b = a.detach().cpu(), b.detach().cpu()
        if a.is_floating_point() or a.is_complex():
            return bool(torch.isclose(a, b, rtol=0, atol=0, equal_nan=True).all())
        return torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. arrays: compare what they print
        return type(a) is type(b) and repr(a) == repr(b)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_ABSENT = "<absent>"


def _resume_differences(
    saved: dict[str, Any], now: dict[str, Any], saved_config: Any, config: dict[str, Any] | None
) -> list[str]:
    """``'what: saved X, now Y'`` for every setting of ``now`` that the checkpoint also records
    (``saved``) and that differs; ``config`` is compared key by key unless it is ``None``."""
    diffs = []
    names = {"samples": "len(data)", "batch_size": "batch_size (per rank)"}
    for key in ("world_size", "batch_size", "samples", "seed"):
        a, b = saved.get(key), now.get(key)
        if key == "seed" and _is_int(a) and _is_int(b):
            # torch reads a seed modulo 2**64, and so does every stream train_ddp derives
            # from it: -1 and 2**64 - 1 run alike, so they continue each other's run
            a, b = int(a) % 2**64, int(b) % 2**64
        if key in saved and key in now and not _same(a, b):
            diffs.append(f"{names.get(key, key)}: saved {saved[key]!r}, now {now[key]!r}")
    if "shuffle" in now and "seed" in saved:  # settings recorded: a shuffle of its own or the old
        a = saved.get("shuffle", _OLD_SHUFFLE)
        if a != now["shuffle"]:
            diffs.append(
                f"sampler shuffle of epoch e: saved {a!r}, now {now['shuffle']!r} (a checkpoint "
                "of an earlier version: its later epochs would be dealt other batches)"
            )
    if config is not None:
        old = dict(saved_config) if isinstance(saved_config, Mapping) else {}
        for key in list(dict.fromkeys([*old, *config])):
            a, b = old.get(key, _ABSENT), config.get(key, _ABSENT)
            if a is _ABSENT or b is _ABSENT or not _same(a, b):
                shown = [v if v is _ABSENT else _short(v) for v in (a, b)]
                diffs.append(f"config[{key!r}]: saved {shown[0]}, now {shown[1]}")
    if "optimizer" in saved and "optimizer" in now:
        a, b = saved["optimizer"], now["optimizer"]
        if a["type"] != b["type"]:
            diffs.append(f"optimizer: saved {a['type']}, now {b['type']}")
        elif len(a["groups"]) != len(b["groups"]):
            diffs.append(
                f"optimizer parameter groups: saved {len(a['groups'])}, now {len(b['groups'])}"
            )
        else:
            many = len(a["groups"]) > 1
            for i, (ga, gb) in enumerate(zip(a["groups"], b["groups"])):
                for key in ga:
                    if key in gb and not _same(ga[key], gb[key]):
                        where = f"optimizer group {i} {key}" if many else f"optimizer {key}"
                        diffs.append(f"{where}: saved {_short(ga[key])}, now {_short(gb[key])}")
    return diffs


def _check_resume(
    path: Path,
    ckpt: dict[str, Any],
    now: dict[str, Any],
    config: dict[str, Any] | None = None,
    *,
    warn: bool = True,
) -> None:
    """Refuse to resume ``ckpt`` (read from ``path``) with settings other than its own;
    ``warn``: warn about a checkpoint without recorded settings (once per call of
    :func:`train_ddp`, on rank 0 only)."""
    state = ckpt.get("state") or {}
    saved = state.get("settings")
    if not isinstance(saved, Mapping):  # written before the settings were recorded
        saved = {"world_size": state.get("world_size")}
    if not isinstance(state.get("settings"), Mapping) and warn:
        warnings.warn(
            f"checkpoint: {str(path)!r} records no training settings (written before they "
            "were saved), so only the world size can be checked: resuming with another "
            "batch size, seed, learning rate or data continues another run than the one saved",
            BayesphysRuntimeWarning,
            stacklevel=user_stacklevel(),
        )
    diffs = _resume_differences(dict(saved), now, ckpt.get("config"), config)
    if diffs:
        raise ValueError(
            f"checkpoint: {str(path)!r} was written by a run with other settings, so resuming "
            f"it would not continue that run exactly: {'; '.join(diffs)}. Resume with the saved "
            "settings, or start afresh with resume=False (the checkpoint is then overwritten "
            "after the first epoch) or another checkpoint path"
        )
