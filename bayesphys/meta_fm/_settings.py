r"""What a :class:`~bayesphys.meta_fm.MetaFlowMatching` is built for, and the training data it
accepts (Atanackovic et al. 2024, Meta Flow Matching).

:func:`model_config` and :func:`model_settings` read a model's configuration and what its
training pairs (or the arguments given instead) set: dimension, treatments, CGFM population
ids, point features. :func:`check_training_data` refuses training pairs a built model would
silently mistrain on, and :func:`training_pairs` gives a fit its checked training split;
:func:`points_warnings` words the warnings for populations smaller than the training subsample
``config.points``.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from .._checks import check_int
from .._stack import user_stacklevel
from .._warning_types import BayesphysUserWarning
from ..problems.populations import PopulationPairs
from ._type_frame import check_type_onehots
from ._validate import (
    as_list,
    check_condition_ids,
    check_features,
    check_pairs,
    training_rows,
    training_split,
)
from .config import MFMConfig

__all__ = [
    "model_config",
    "ModelSettings",
    "model_settings",
    "check_training_data",
    "training_pairs",
    "points_warnings",
]


def model_config(config: Any, overrides: dict[str, Any]) -> MFMConfig:
    """A model's own configuration: a copy of ``config`` (an :class:`MFMConfig`, or ``None``
    for the defaults) with the fields in ``overrides`` replaced (and checked)."""
    if config is not None and not isinstance(config, MFMConfig):
        raise TypeError(
            f"config: expected an MFMConfig or None, received {type(config).__name__} "
            "(build one with MFMConfig(**settings), or pass the settings as keywords)"
        )
    cfg = copy.deepcopy(config) if config is not None else MFMConfig()
    if overrides:
        cfg = MFMConfig.from_dict({**cfg.to_dict(), **overrides})
    return cfg


class ModelSettings(NamedTuple):
    """What a model is built for (see :func:`model_settings`)."""

    data: PopulationPairs | None  #: the training split of the data, if given
    paired: bool  #: whether the data are (or ``"auto"`` coupling assumes them) paired
    dim: int
    num_treatments: int
    condition_ids: list[int]  #: the training population ids (CGFM's one-hots)
    node_features: int  #: point features the MFM embedding reads


def model_settings(
    data: PopulationPairs | None,
    config: MFMConfig,
    *,
    dim: int | None,
    num_treatments: int | None,
    condition_ids: Any,
) -> ModelSettings:
    """What a model of ``config`` is built for, from its training pairs ``data`` (checked;
    their ``train`` split) or, without data, from ``dim``, ``num_treatments`` and
    ``condition_ids`` (distinct ints; required by CGFM). Given beside the data, these must
    agree with it, and ``config.node_features`` (when set and not 0) with the data's number of
    point features (read by MFM only: 0 for FM and CGFM, unless ``config.type_frame``, whose
    field reads them for every method and needs them one-hot)."""
    cfg = config
    train = None
    if data is not None:
        check_pairs(data)
        train = training_split(data)
        ids = sorted({int(i) for i in train.source_id})
        for name, given, want in (
            ("dim", dim, train.dim),
            ("num_treatments", num_treatments, train.num_treatments),
            (
                "condition_ids",
                None if condition_ids is None else sorted(check_condition_ids(condition_ids)),
                ids,
            ),
        ):
            if given is not None and as_list(given) != as_list(want):
                raise ValueError(
                    f"{name}: the data set it to {want!r:.200}, received {given!r:.200} "
                    "(leave it out when passing data)"
                )
        dim, num_treatments, condition_ids = train.dim, train.num_treatments, ids
        paired = bool(data.paired)
        nf = 0 if train.source_features is None else int(train.source_features[0].shape[-1])
        if cfg.type_frame and not nf:
            raise ValueError(
                "data.source_features: type_frame reads each source point's one-hot type; "
                "expected per-point one-hot features [n_i, f], received None"
            )
        if cfg.type_frame:
            check_type_onehots("data.source_features", train.source_features)
        if cfg.method != "MFM" and not cfg.type_frame:
            nf = 0  # only the embedding reads point features
        if cfg.node_features is not None and int(cfg.node_features) not in (0, nf):
            raise ValueError(
                f"node_features: the data give {nf} features per point (used by MFM only, "
                f"or by the type_frame field), config says {cfg.node_features} (0 ignores them)"
            )
        nf = nf if cfg.node_features is None else int(cfg.node_features)
    else:
        paired = cfg.coupling not in ("ot", "ot_full")
        nf = int(cfg.node_features or 0)
        if cfg.type_frame and not nf:
            raise ValueError(
                "node_features: type_frame reads each point's one-hot type; without data, "
                f"give their number (node_features=f), received {cfg.node_features!r}"
            )
    if dim is None:
        raise ValueError("dim: required when no data is given")
    dim = check_int("dim", dim, minimum=1)
    num_treatments = (
        0 if num_treatments is None else check_int("num_treatments", num_treatments, minimum=0)
    )
    ids = check_condition_ids(condition_ids)
    if cfg.method == "CGFM" and not ids:
        raise ValueError("condition_ids: CGFM needs the training population ids (pass data)")
    return ModelSettings(train, paired, dim, num_treatments, ids, nf)


def check_training_data(
    data: PopulationPairs,
    config: MFMConfig,
    *,
    paired: bool,
    coupling: str,
    num_treatments: int,
    condition_ids: Sequence[int],
    rows: Sequence[int] | None = None,
) -> None:
    """Refuse training data a model would silently mistrain on (run after :func:`check_pairs`).

    The model is described by its ``config``, whether it was built for ``paired`` data, its
    resolved ``coupling`` (``"auto"`` resolved), its ``num_treatments`` and (CGFM) the
    training population ids ``condition_ids`` it has one-hots for. ``rows``: the index in the
    user's data of each pair of ``data`` (their training split), for messages that name the
    user's pair ``data.source[i]``; ``None``: ``data`` are the user's pairs."""
    cfg = config
    rows = list(range(len(data))) if rows is None else list(rows)
    if cfg.coupling == "auto" and bool(data.paired) != paired:
        raise ValueError(
            f"coupling: 'auto' resolved to {coupling!r} for "
            f"{'paired' if paired else 'unpaired'} data when this model was built, but "
            f"data.paired is {bool(data.paired)}; pass coupling='index' or 'ot' explicitly"
        )
    if coupling == "index":
        for k, (a, b) in enumerate(zip(data.source, data.target)):
            if a.shape[0] != b.shape[0]:
                i = rows[k]
                raise ValueError(
                    f"coupling: 'index' pairs point j of each source with point j of its "
                    f"target, but data.source[{i}] has {a.shape[0]} points and "
                    f"data.target[{i}] {b.shape[0]} (use 'ot' or 'ot_full')"
                )
    if data.treatment is not None:
        if not num_treatments:
            raise ValueError(
                "data.treatment: this model was built without treatments (num_treatments=0); "
                "they would be ignored (build the model from these data)"
            )
        top = int(torch.as_tensor(data.treatment).max())
        if top >= num_treatments:
            raise ValueError(
                f"data.treatment: expected indices in [0, {num_treatments}) (this "
                f"model's num_treatments), received {top}"
            )
        if int(data.num_treatments) > num_treatments:  # indices of another labelling
            raise ValueError(
                f"data.num_treatments: this model was built for {num_treatments} treatments, "
                f"received data of {int(data.num_treatments)} (their indices would be read "
                f"as this model's treatments)"
            )
    elif num_treatments:
        raise ValueError(
            f"data.treatment: this model was built with {num_treatments} treatments; expected "
            f"one index in [0, {num_treatments}) per pair, received None"
        )
    if cfg.method == "CGFM":
        unknown = sorted({int(i) for i in data.source_id} - set(condition_ids))
        if unknown:
            raise ValueError(
                f"data.source_id: CGFM has one-hots for ids {condition_ids!r:.200} "
                f"only; ids {unknown!r:.200} would train the average one-hot"
            )


def training_pairs(
    data: PopulationPairs,
    config: MFMConfig,
    dim: int,
    *,
    paired: bool,
    coupling: str,
    num_treatments: int,
    condition_ids: Sequence[int],
    warn_points: bool = True,
    rows: Sequence[int] | None = None,
) -> tuple[PopulationPairs, list[int]]:
    """The training split of ``data``, checked for a fit of a model of dimension ``dim`` built
    for these settings (see :func:`check_training_data`), with the point features its
    embedding reads (``config.node_features``), and the index in the user's data of each of
    its pairs: ``rows`` when given one per pair (``data`` being a split the model kept),
    else :func:`training_rows` ``(data)``. ``warn_points``: warns as :func:`points_warnings`
    says."""
    check_pairs(data, dim)
    split = training_split(data)
    rows = training_rows(data) if rows is None or len(rows) != len(split) else list(rows)
    data = split
    check_training_data(
        data,
        config,
        paired=paired,
        coupling=coupling,
        num_treatments=num_treatments,
        condition_ids=condition_ids,
        rows=rows,
    )
    if config.node_features:
        check_features(
            "data.source_features", data.source_features, data.source, config.node_features
        )
    if config.type_frame:
        check_type_onehots("data.source_features", data.source_features)
    if warn_points:
        cfg = config
        for text in points_warnings(data, cfg.points, cfg.method, coupling, "fit", "set points to"):
            warnings.warn(text, BayesphysUserWarning, stacklevel=user_stacklevel())
    return detached(data), rows


def detached(data: PopulationPairs) -> PopulationPairs:
    """``data`` with its points and point features detached from any autograd graph: they are
    constants of the fit (points that required grad, e.g. the output of a differentiable
    simulator, failed in the second step with torch's "backward through the graph a second
    time", the first step having freed their graph)."""
    feats = data.source_features
    return dataclasses.replace(
        data,
        source=[s.detach() for s in data.source],
        target=[t.detach() for t in data.target],
        source_features=None if feats is None else [f.detach() for f in feats],
    )


def points_warnings(
    data: PopulationPairs, points: int, method: str, coupling: str, who: str, fix: str
) -> list[str]:
    """The texts of the ``config.points`` warnings for training ``data`` (already split):
    populations smaller than ``points`` are resampled with replacement for the flow-matching
    pairs in training (the MFM embedding reads a source population of fewer than ``points``
    points whole, as prediction does). ``who`` prefixes each text (``"fit"``,
    ``"MFMEnsemble.fit"``); ``fix`` names the setting to change."""
    out = []
    small = min(q.shape[0] for q in data.source)
    if method == "MFM" and small < points:
        out.append(
            f"{who}: a training source population has {small} points, fewer than "
            f"config.points={points}: training resamples such populations with replacement "
            "for the flow-matching pairs (repeated source points in each batch; the embedding "
            f"reads them whole, as prediction does); {fix} at most {small} (the smallest "
            "population size) to avoid it"
        )
    small_t = min(q.shape[0] for q in data.target)
    if coupling not in ("index", "ot_full") and small_t < points:
        out.append(
            f"{who}: a training target population has {small_t} points, fewer than "
            f"config.points={points}: training resamples such targets with replacement "
            f"(repeated target points in each flow-matching batch); {fix} at most {small_t} to "
            "avoid it"
        )
    return out
