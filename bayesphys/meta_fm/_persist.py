"""Checkpoint formats of :class:`~bayesphys.meta_fm.MetaFlowMatching` and
:class:`~bayesphys.meta_fm.MFMEnsemble` (Atanackovic et al. 2024, Meta Flow Matching).

What each ``save`` writes beside the weights (a model's: :func:`model_checkpoint_config`), and
the checks each ``load`` applies before it rebuilds anything: a model's settings
(:func:`check_checkpoint_config`), that its modules are the ones those settings build
(:func:`check_rebuildable`), and an ensemble's one settings entry and one state per member
(:func:`check_ensemble_checkpoint`). A model is then rebuilt without touching the caller's random
streams (:func:`rebuild_unseeded`) and given back its training state (:func:`saved_training_state`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from .._built_settings import check_shape_settings
from .._checkpoint_rebuild import refuse_unknown, require_entries
from .._checks import check_bool, check_int, check_optional_seed
from .._process_state import _GLOBAL_STATE
from ._sources import saved_sources
from ._treatments import saved_treatments
from .config import MFMConfig
from .embedding import PopulationEmbedding
from .field import VectorField

if TYPE_CHECKING:
    from .model import MetaFlowMatching

__all__ = [
    "restore_model",
    "model_checkpoint_config",
    "check_checkpoint_config",
    "check_from_state_arguments",
    "check_state_entries",
    "check_rebuildable",
    "rebuild_unseeded",
    "saved_training_state",
    "check_ensemble_checkpoint",
]

M = TypeVar("M")


#: the settings :meth:`MetaFlowMatching.checkpoint_config` writes, and those a load reads
#: without a default (``steps_done``, ``train_rng``, ``trained_treatments`` and
#: ``trained_sources`` are absent from older files)
_CONFIG_KEYS = frozenset(
    {
        "config",
        "dim",
        "num_treatments",
        "condition_ids",
        "paired",
        "seed",
        "dtype",
        "steps_done",
        "train_rng",
        "trained_treatments",
        "trained_sources",
    }
)
_REQUIRED_CONFIG = ("config", "dim", "num_treatments", "condition_ids", "paired", "seed", "dtype")

#: the settings :meth:`MFMEnsemble.save` writes
_ENSEMBLE_CONFIG_KEYS = ("members", "seed")


def model_checkpoint_config(model: MetaFlowMatching) -> dict[str, Any]:
    """:meth:`~bayesphys.meta_fm.MetaFlowMatching.checkpoint_config` of ``model`` (the keys of
    ``_CONFIG_KEYS``), after refusing a setting the modules were built from that was
    assigned since, and modules the settings do not build."""
    built = getattr(model, "_shape_settings", {})
    check_shape_settings(model.config, built, type(model).__name__)
    model._check_built("save")  # fourier_sigma: the saved B was drawn with the old one
    check_rebuildable(model.net, model.config.method)
    trained = getattr(model, "_trained_treatments", None)
    return {
        "config": model.config.to_dict(),
        "dim": model.dim,
        "num_treatments": model.num_treatments,
        "condition_ids": model.condition_ids,
        "paired": model.paired,
        "seed": model.seed,
        "dtype": str(model.dtype).removeprefix("torch."),
        "steps_done": model.steps_done,
        "train_rng": None if model._train_gen is None else model._train_gen.get_state(),
        "trained_treatments": None if trained is None else sorted(trained),
        "trained_sources": getattr(model, "_trained_sources", None),
    }


def check_checkpoint_config(
    ck: dict[str, Any], path: Any, cfg: Any, what: str = "settings"
) -> None:
    """Refuse a model's checkpoint settings ``cfg`` (``what``, as named in the message) that
    lack an entry a load reads or hold one this release does not know, naming ``path``."""
    require_entries(cfg, path, what, _REQUIRED_CONFIG)
    refuse_unknown(ck, path, what, cfg, _CONFIG_KEYS)


def check_rebuildable(net: nn.ModuleDict, method: str) -> None:
    """Refuse to save ``net`` when its modules are not those the settings of ``method`` build
    (a load rebuilds the modules from the settings: a module swapped in by hand, e.g. an
    embedding of one's own, was saved, and its checkpoint failed to load with a raw
    state-dict error)."""
    built = {"field": VectorField}
    if method == "MFM":
        built["embed"] = PopulationEmbedding
    swapped = [
        f"net[{k!r}] is a {type(mod).__name__}"
        for k, mod in net.items()
        if k not in built or type(mod) is not built[k]
    ] + [f"net[{k!r}] is missing" for k in built if k not in net]
    if swapped:
        raise ValueError(
            f"save: {', '.join(swapped)}, not the module the settings build "
            f"({', '.join(f'{k}: {c.__name__}' for k, c in built.items())}); a checkpoint "
            f"could not rebuild it: keep its weights with model.state() instead"
        )


def check_from_state_arguments(cfg: Any, state: Any) -> None:
    """Refuse ``from_state`` arguments that are not a :meth:`checkpoint_config` dict ``cfg``
    holding every entry a rebuild reads, and a ``state`` dict (each failed inside the rebuild
    with Python's or torch's unnamed error: ``'int' object is not subscriptable``)."""
    if not isinstance(cfg, Mapping):
        raise TypeError(
            f"cfg: expected the dict checkpoint_config() returns, received {type(cfg).__name__}"
        )
    missing = [k for k in _REQUIRED_CONFIG if k not in cfg]
    if missing:
        raise ValueError(f"cfg: lacks the entries {missing} that checkpoint_config() writes")
    if not isinstance(state, Mapping):
        raise TypeError(
            f"state: expected a dict of weight name -> tensor, as state() returns, received "
            f"{type(state).__name__}"
        )


def check_state_entries(net: nn.Module, state: Mapping[str, Any]) -> None:
    """Refuse a ``state`` whose names or shapes are not those of the weights of ``net`` (the
    modules ``cfg`` describes): torch's own ``load_state_dict`` error named neither
    argument."""
    want = net.state_dict()
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or extra:
        raise ValueError(
            f"state: expected the weights of the model cfg describes; missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
            f"{' ...' if len(extra) > 5 else ''}"
        )
    for k, ref in want.items():
        v = state[k]
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(ref.shape):
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(
                f"state[{k!r}]: expected a tensor of shape {tuple(ref.shape)} (the model cfg "
                f"describes), received {got}"
            )


def rebuild_unseeded(build: Callable[..., M], cfg: dict[str, Any], device: Any) -> M:
    """``build(...)`` (a model class) with the settings, dimensions and condition ids of
    checkpoint settings ``cfg``, on ``device``, unseeded (every weight is then loaded): the
    caller's random streams are left as they were."""
    # built unseeded (every weight is then loaded) in a forked RNG: an unseeded build draws
    # its initial weights from the global streams, which loading must leave as they were
    with _GLOBAL_STATE, torch.random.fork_rng(devices=[]):  # process-wide: see seeded
        return build(
            config=MFMConfig.from_dict(cfg["config"]),
            dim=cfg["dim"],
            num_treatments=cfg["num_treatments"],
            condition_ids=cfg["condition_ids"],
            device=device,
            dtype=cfg["dtype"],
            seed=None,
        )


def saved_training_state(
    cfg: dict[str, Any],
) -> tuple[int | None, bool, int, torch.Generator | None]:
    """The ``seed``, ``paired`` flag, steps taken and training batches' stream (``None`` when
    not saved) of checkpoint settings ``cfg``, checked."""
    seed = check_optional_seed("seed", cfg["seed"])
    paired = check_bool("paired", cfg["paired"])  # "no" is truthy: it paired
    # older checkpoints: trained (keep their normalisation), stream restarted from the seed
    steps_done = check_int("steps_done", cfg.get("steps_done", 1), minimum=0)
    stream = None
    if cfg.get("train_rng") is not None:
        stream = torch.Generator()
        stream.set_state(cfg["train_rng"])
    return seed, paired, steps_done, stream


def check_ensemble_checkpoint(ck: dict[str, Any], path: Any) -> tuple[list[Any], list[Any]]:
    """The members' settings and states of an ensemble checkpoint ``ck`` read from ``path``,
    refused (naming ``path``) unless it holds exactly the settings :meth:`MFMEnsemble.save`
    writes and one settings entry and one state per member, each member's settings complete."""
    cfg, states = ck["config"], ck["state"]
    require_entries(cfg, path, "settings", _ENSEMBLE_CONFIG_KEYS)
    refuse_unknown(ck, path, "settings", cfg, _ENSEMBLE_CONFIG_KEYS)
    members = cfg["members"]
    # one member's settings and one's weights each: a member short would load as a smaller
    # ensemble (another spread), silently
    lengths = [len(v) if isinstance(v, (list, tuple)) else None for v in (members, states)]
    if None in lengths or lengths[0] != lengths[1]:
        raise ValueError(
            f"path: {path} holds settings {_count(members)} and weights {_count(states)}; "
            "save() writes one of each per ensemble member (the file is damaged or was not "
            "written by save())"
        )
    for i, member in enumerate(members):
        check_checkpoint_config(ck, path, member, f"member {i} settings")
    return members, states


def _count(v: Any) -> str:
    """How many members a list or tuple read from a checkpoint is for, or what it is instead."""
    return f"for {len(v)} members" if isinstance(v, (list, tuple)) else f"as a {type(v).__name__}"


def restore_model(
    cls: type[MetaFlowMatching], cfg: dict[str, Any], state: dict[str, Any], device: Any
) -> MetaFlowMatching:
    """:meth:`~bayesphys.meta_fm.MetaFlowMatching.from_state`: ``cfg`` and ``state`` checked,
    the modules rebuilt without touching the caller's random streams, the training state
    (seed, pairing, steps, treatments and sources seen, batch stream) and the weights given
    back; the model is left in evaluation mode."""
    check_from_state_arguments(cfg, state)
    m = rebuild_unseeded(cls, cfg, device)
    m.seed, m.paired, m.steps_done, stream = saved_training_state(cfg)
    m._trained_treatments = saved_treatments(cfg.get("trained_treatments"), m.num_treatments)
    m._trained_sources = saved_sources(cfg.get("trained_sources"), m.dim)
    if stream is not None:  # a restored stream: split by rank at the next fit
        m._train_gen, m._split_gen = stream, True
    check_state_entries(m.net, state)
    m.net.load_state_dict(state)
    m.net.eval()
    return m
