r"""One :meth:`~bayesphys.meta_fm.MetaFlowMatching.fit` call (Atanackovic et al. 2024, Meta
Flow Matching): its argument checks, the training pairs and their memory check, the
normalisation estimated before the first step, the training batches' stream (split by rank
under ``torchrun``), the full OT plans of ``coupling="ot_full"``, and the run of
:class:`~bayesphys.meta_fm._train.FlowSteps` with the model's step count and callback.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._checks import check_bool, check_int, check_optional_seed, dense_memory_checked, require
from .._data_parallel import GradientSync, rank_generator_seed
from .._fit_callback import FitCallback, check_fit_callback
from .._model import FitResult
from .._stack import user_stacklevel
from .._time_budget import check_max_seconds
from .._warning_types import BayesphysUserWarning
from ..problems.populations import PopulationPairs
from ._settings import training_pairs
from ._sources import merged_record, source_record
from ._train import FlowSteps, batch_stream, check_fit_memory, normalization, warn_far_from_origin
from ._treatments import data_treatments
from .coupling import full_ot_plans

if TYPE_CHECKING:
    from .model import MetaFlowMatching

__all__ = ["fit_model"]


def warn_features_ignored(data: PopulationPairs) -> None:
    """Warn that ``data.source_features`` (``[n_i, f]`` per population) go unread by an MFM
    model built from ``dim`` alone, whose embedding was made for the coordinates only."""
    if data.source_features is None:
        return
    f = int(data.source_features[0].shape[-1])
    warnings.warn(
        f"data.source_features: this MFM model was built from dim alone (node_features=0), "
        f"so its embedding reads the coordinates only and the data's {f} features per point "
        f"are ignored; build it from the data, MetaFlowMatching(data, ...), or with "
        f"node_features={f} to use them (node_features=0 ignores them without this warning)",
        BayesphysUserWarning,
        stacklevel=user_stacklevel(),
    )


def fit_model(
    model: MetaFlowMatching,
    data: PopulationPairs | None,
    *,
    steps: int,
    progress: bool,
    seed: int | None,
    max_seconds: float | None,
    callback: Callable[[MetaFlowMatching, int], Any] | None,
    callback_every: int,
) -> FitResult:
    """Run :meth:`~bayesphys.meta_fm.MetaFlowMatching.fit` on ``model`` (its docstring states
    the arguments, the checks and the result); advances ``model.steps_done``."""
    model._check_built("fit")
    steps = check_int("steps", steps, minimum=0)
    progress = check_bool("progress", progress)
    seed = check_optional_seed("seed", seed)
    max_seconds = check_max_seconds(max_seconds)
    callback_every = check_fit_callback(model, callback, callback_every)
    if model.config.solver == "dopri5":  # before training, not at the first predict
        # after it (a saved dopri5 model still loads without it, and predicts with rk4)
        require("torchdiffeq", "torchdiffeq", "config.solver='dopri5' (or use 'rk4')")
    stored = data is None
    data = model.data if data is None else data
    if data is None:
        raise ValueError(
            "data: no training data given here or at construction (a loaded model keeps "
            "none: pass them, fit(data, ...))"
        )
    cfg = model.config
    # an MFMEnsemble gives the points warnings once for all its members (_points_warned)
    warn = not getattr(model, "_points_warned", False)
    given = data
    # the index in the user's data of each training pair (those kept at construction)
    rows = getattr(model, "_train_rows", None) if stored else None
    data, rows = training_pairs(
        given, cfg, model.dim, warn_points=warn, rows=rows, **model._built_for()
    )
    check_fit_memory(data, rows, cfg, model.coupling, dtype=model.dtype, device=model.device)
    if cfg.method == "MFM" and getattr(model, "_features_unset", False):
        warn_features_ignored(data)
    if cfg.normalize and model.steps_done == 0:
        # the frame the weights learn in: estimated before the first step only (a later fit,
        # e.g. fine-tuning on other pairs, keeps it)
        mean, scale = normalization(data)
        warn_far_from_origin(mean, scale, model.dtype)  # as normalization's: every member
        model.net.shift.copy_(mean.to(model.dtype))
        model.net.scale.copy_(scale.to(model.dtype))
    if seed is not None or model._train_gen is None:
        model._train_gen = batch_stream(model.seed if seed is None else seed)
        model._split_gen = True
    gen = model._train_gen
    model._sync_embedding()
    plans = None
    if model.coupling == "ot_full":
        with dense_memory_checked():  # checked above, naming data.source[i]/data.target[i]
            plans = full_ot_plans(data.source, data.target)
    model.net.train()
    # data-parallel under torchrun: identical replicas, per-rank batches, mean gradients
    sync = GradientSync(model.net)
    if model._split_gen:  # a new or restored stream: split it by rank once
        rank_generator_seed(gen)
        model._split_gen = False
    start = model.steps_done
    training = FlowSteps(
        model.net,
        cfg,
        sync,
        max(steps, 1),
        batch=lambda: model._batch(data, gen, plans),
        condition=model._condition,
        loss=lambda x0, x1, cond, ctr, f0: model._loss(x0, x1, cond, gen, ctr, f0),
        stream=gen,
    )
    try:
        res = training.run(
            steps,
            max_seconds,
            progress=progress and sync.is_main,
            desc=getattr(model, "_bar_label", None) or f"{cfg.method} fit",
            counted=model._count_step,
            callback=FitCallback(model, callback, callback_every, lambda: model.steps_done),
        )
    finally:  # the steps taken (an interrupted fit's too) trained the data's treatments
        trained = getattr(model, "_trained_treatments", None)  # None: not known
        if model.steps_done > start and trained is not None:
            model._trained_treatments = trained | data_treatments(data)
        if model.steps_done > start:  # and its source populations (predict warns far from them)
            rec = source_record(data.source, data.target)
            model._trained_sources = merged_record(getattr(model, "_trained_sources", None), rec)
    if res.message.startswith("diverged"):
        # optimize restored the weights before the last recorded step's update (the loss a
        # step returns is that of the weights before its update): not one of those counted.
        # A step whose finite loss came with a non-finite update was counted but is not
        # recorded (res.steps): count from the record
        model.steps_done = start + max(res.steps - 1, 0)
    model.net.eval()
    model.fit_result = res
    return res
