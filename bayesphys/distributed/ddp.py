r"""Data-parallel training helpers on ``torch.distributed`` (DDP), launched by ``torchrun``.

With :math:`W` processes each holding a shard :math:`B_r` of a global batch
:math:`B = \bigcup_r B_r` (:math:`|B_r| = b`), DDP all-reduces gradients so every replica takes
the step

.. math:: g = \frac1W \sum_{r=1}^{W} \nabla_\theta \frac1b \sum_{i \in B_r} \ell_i(\theta)
          = \nabla_\theta \frac1{Wb} \sum_{i \in B} \ell_i(\theta),

i.e. the same step one process takes on the global batch of size :math:`Wb` (for a loss that is a
mean over the batch). :class:`torch.utils.data.distributed.DistributedSampler` deals
``perm[r::W]`` to rank ``r``, so with ``drop_last`` the global batches equal those of one process
with batch size :math:`Wb`.

Launch (CPU, gloo; ``--nproc_per_node`` GPUs with nccl on CUDA)::

    torchrun --standalone --nproc_per_node=2 examples/ddp_training.py

Helpers: :func:`init_distributed` / :func:`cleanup_distributed` (from torchrun's ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; defined in
:mod:`~bayesphys.distributed._process_group`), :func:`distributed_loader`,
:func:`seed_for_rank`, :func:`rank_zero_only`, :func:`save_training_checkpoint` /
:func:`load_training_checkpoint` (resume), and the generic loop :func:`train_ddp`. Training
loops written with them keep no global state and do I/O on rank 0 only.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import Dataset, IterableDataset

from .._checkpoint import check_checkpointable, cpu_copy, load_checkpoint
from .._checks import check_bool, check_int, check_real, check_seed, stream_seed
from .._fit_state import optimizer_state_tensors
from .._model import FitResult, autograd_on, release_grads
from .._progress import progress_bar
from ._ddp_checkpoint import (
    CHECKPOINT_KIND,
    SHUFFLE,
    SHUFFLE_TAG,
    _check_resume,
    _optimizer_settings,
    load_states,
    load_training_checkpoint,
    save_training_checkpoint,
)
from ._ddp_data import _as_dataset, _to, distributed_loader
from ._process_group import (
    DistContext,
    all_reduce_mean,
    check_backend,
    check_device,
    cleanup_distributed,
    free_port,
    init_distributed,
    launched_by_torchrun,
    planned_world,
    rank_zero_only,
    seed_for_rank,
    set_local_rank_env,
    unwrap,
)

__all__ = [
    "DistContext",
    "init_distributed",
    "cleanup_distributed",
    "launched_by_torchrun",
    "free_port",
    "set_local_rank_env",
    "seed_for_rank",
    "rank_zero_only",
    "distributed_loader",
    "unwrap",
    "all_reduce_mean",
    "save_training_checkpoint",
    "load_training_checkpoint",
    "train_ddp",
    "CHECKPOINT_KIND",
]

# documented and pickled under this public module (defined in a private one)
DistContext.__module__ = __name__


def _check_callable(name: str, fn: Any, *, optional: bool = False) -> None:
    if (fn is None and optional) or callable(fn):
        return
    what = "a callable or None" if optional else "a callable"
    raise TypeError(f"{name}: expected {what}, received {type(fn).__name__}")


def _check_train_args(
    model_fn, loss_fn, data, epochs, batch_size, lr, optimizer_fn, checkpoint, seed, config
) -> tuple[Dataset, int, int, int]:
    """:func:`train_ddp`'s checks that need no process group: ``(dataset, epochs, batch_size,
    seed)``."""
    _check_callable("model_fn", model_fn)
    _check_callable("loss_fn", loss_fn)
    _check_callable("optimizer_fn", optimizer_fn, optional=True)
    epochs = check_int("epochs", epochs, minimum=0)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_seed("seed", seed)
    if optimizer_fn is None:  # lr is used only by the default Adam
        check_real("lr", lr, minimum=0.0, strict=True)
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(
                f"checkpoint: expected a path or None, received {type(checkpoint).__name__}"
            )
        if Path(checkpoint).expanduser().is_dir():
            raise ValueError(f"checkpoint: {str(checkpoint)!r} is a folder, expected a file path")
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"config: expected a mapping or None, received {type(config).__name__}")
    if checkpoint is not None and config is not None:
        # before any training: the first epoch's checkpoint would refuse it (or never load)
        check_checkpointable(dict(config), "config")
    ds = _as_dataset(data)
    try:
        if isinstance(ds, IterableDataset):
            raise TypeError("an iterable dataset cannot be split by rank")
        len(ds)
    except TypeError as err:
        raise TypeError(
            f"data: expected a map-style dataset with a length, received {type(ds).__name__}"
        ) from err
    return ds, epochs, batch_size, seed


def _seed_torch(seed: int, cuda: list[int]) -> None:
    """Seed torch's CPU generator and those of the CUDA devices in ``cuda`` only
    (``torch.manual_seed`` reseeds every CUDA device, those :func:`train_ddp` does not restore)."""
    torch.default_generator.manual_seed(seed)
    for idx in cuda:
        with torch.cuda.device(idx):
            torch.cuda.manual_seed(seed)


def _weights_finite(params: list[torch.Tensor]) -> torch.Tensor | None:
    """A 0-d bool tensor on the parameters' device: every entry of ``params`` finite
    (``None`` without parameters)."""
    if not params:
        return None
    return torch.stack([torch.isfinite(p.detach()).all() for p in params]).all()


def _state_finite(optimizer: torch.optim.Optimizer, device: torch.device) -> torch.Tensor | None:
    """A 0-d bool tensor on ``device``: every floating-point or complex tensor of the
    optimizer's state (:func:`~bayesphys._fit_state.optimizer_state_tensors`, e.g. Adam's moments)
    finite (``None`` for an empty state). Tensors on ``device`` are
    tested there without a wait for it; others (a step count on the CPU) are read at once."""
    here, elsewhere = [], True
    for t in optimizer_state_tensors([optimizer]):
        if t.device == device:
            here.append(torch.isfinite(t).all())
        elif not bool(torch.isfinite(t).all()):
            elsewhere = False
    if not here:
        return None if elsewhere else torch.zeros((), dtype=torch.bool, device=device)
    return torch.stack(here).all() & elsewhere


@autograd_on()
def train_ddp(
    model_fn: Callable[[], torch.nn.Module],
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    data: Dataset | Sequence[torch.Tensor] | torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    optimizer_fn: Callable[[Any], torch.optim.Optimizer] | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    backend: str | None = None,
    progress: bool = True,
    config: dict[str, Any] | None = None,
) -> FitResult:
    r"""Generic data-parallel loop: ``loss_fn(model, batch)`` (a batch mean) per step.

    Every rank builds ``model_fn()`` after seeding torch with ``seed`` (identical replicas),
    wraps it in DDP when ``world_size > 1``, and sees ``batch_size`` samples per step (global
    batch ``world_size * batch_size``). Each epoch reseeds torch with
    ``stream_seed(seed, "train_ddp/epoch", epoch, rank)`` (a hash: runs of neighbouring seeds
    share no epoch's stream, as ``seed + epoch`` would make them) and the sampler with
    ``epoch``, so a run resumed from ``checkpoint`` (written by rank 0 after every epoch)
    continues exactly as an uninterrupted one. The sampler (:func:`distributed_loader`, which
    shuffles epoch ``e`` with the generator seeded ``base + e``) gets
    ``base = stream_seed(seed, "train_ddp/shuffle")``, a hash too: with ``base = seed`` runs
    of neighbouring seeds would deal the same shuffles one epoch apart (seed ``s``'s epoch
    ``e + 1`` would be seed ``s + 1``'s epoch ``e``), and an ensemble trained over
    consecutive seeds would see its batches repeat across members. Works in a single process
    without torchrun.

    Resuming needs the settings the checkpoint was written with: the number of ranks
    (``world_size``), ``batch_size`` (per rank), ``len(data)``, ``seed`` (compared modulo
    ``2**64``, as torch reads it: ``-1`` and ``2**64 - 1`` are one run), ``config`` (compared
    key by key with the types of the values: a list and a tuple of the same numbers differ, as
    do tensors of two dtypes; leave out of it what may change between resumes, such as the
    number of epochs) and the optimizer (its class and the hyperparameters of its parameter groups,
    e.g. ``lr``; a resumed optimizer would otherwise keep the saved ones without a word). Any
    difference is refused with a ``ValueError`` naming each setting, saved and now, before
    any process group or model is set up (the optimizer's once it is built, before any step);
    ``resume=False`` or another ``checkpoint`` path starts afresh. ``epochs`` may differ (a
    longer run continues, a shorter one trains nothing), as may ``device`` and ``backend``
    (the same batches and steps, computed on other hardware, so equal up to floating-point
    rounding). The contents of ``data`` are not compared, only its length. Checkpoints written
    before the settings were recorded are checked for ``world_size`` and ``config`` only; one
    written before the shuffle was hashed (its settings name no ``shuffle``) is refused, as its
    later epochs would shuffle otherwise than the saved run's.

    An epoch whose mean loss is not finite, or after which a weight is not finite (a NaN or
    infinite gradient in its last step) or a floating-point tensor of the optimizer's state is
    not (e.g. Adam's squared-gradient average overflowed by a huge but finite gradient: the
    weights stay finite, but those it touched never move again), is rolled back (model and
    optimizer as it started), is not written to ``checkpoint`` and ends the loop,
    ``converged=False``. The caller's global random streams are restored
    afterwards (the loop seeds its own).

    Returns a :class:`~bayesphys.FitResult`: ``loss_history`` holds the epoch mean loss averaged
    over ranks (epochs run in this call); ``extra`` has ``world_size``, ``start_epoch``,
    ``samples_per_second`` (global) and ``model`` (the trained bare module).

    The arguments are checked before any process group, model or optimizer is set up, on
    every rank alike: a ``batch_size`` larger than the samples each rank holds (with
    ``epochs > 0``) is refused there, whatever a checkpoint holds.
    """
    ds, epochs, batch_size, seed = _check_train_args(
        model_fn, loss_fn, data, epochs, batch_size, lr, optimizer_fn, checkpoint, seed, config
    )
    progress = check_bool("progress", progress)
    check_device(device)
    check_backend(backend)
    rank, world = planned_world()
    per_rank = len(ds) // world  # what DistributedSampler deals each rank with drop_last
    if epochs > 0 and per_rank < batch_size:
        # the same on every rank, so all ranks stop here, before any rendezvous
        raise ValueError(
            f"batch_size: {batch_size} per rank exceeds the {per_rank} samples each of the "
            f"{world} rank(s) holds, so no batch would run (batches are dropped when "
            "incomplete); lower batch_size or give more data"
        )
    config = dict(config or {})
    settings: dict[str, Any] = {
        "world_size": world,
        "batch_size": batch_size,
        "samples": len(ds),
        "seed": seed,
        "shuffle": SHUFFLE,
    }
    ckpt_path = Path(checkpoint).expanduser() if checkpoint is not None else None
    saved = None
    if ckpt_path is not None and resume and ckpt_path.exists():
        # read and compared on every rank alike, before any rendezvous: all ranks refuse together
        saved = load_checkpoint(ckpt_path, kind=CHECKPOINT_KIND, map_location="cpu")
        _check_resume(ckpt_path, saved, settings, config, warn=rank == 0)
    ctx = init_distributed(backend, device)
    cuda = []
    if ctx.device.type == "cuda":
        cuda = [ctx.device.index if ctx.device.index is not None else torch.cuda.current_device()]
    model = net = None
    try:
        # the seeds below are this loop's own: the caller's global streams come back after it
        with torch.random.fork_rng(devices=cuda):
            _seed_torch(seed, cuda)
            model = model_fn().to(ctx.device)
            params = list(model.parameters())
            optimizer = optimizer_fn(params) if optimizer_fn else torch.optim.Adam(params, lr=lr)
            settings["optimizer"] = _optimizer_settings(optimizer)
            start_epoch, step = 0, 0
            if saved is not None:
                # warned (if at all) by the check above
                _check_resume(ckpt_path, saved, {"optimizer": settings["optimizer"]}, warn=False)
                state = saved["state"]
                # another model's weights (model_fn changed, the settings not) refused by name
                load_states(ckpt_path, state, model, optimizer)
                start_epoch, step = state["epoch"] + 1, state["step"]
                del saved, state  # the weights now live in the model and the optimizer
            net = model
            if ctx.distributed:
                ids = [ctx.device.index] if ctx.device.type == "cuda" else None
                net = DDP(model, device_ids=ids)
            loader = distributed_loader(
                ds, batch_size, ctx, shuffle=True, seed=stream_seed(seed, SHUFFLE_TAG)
            )
            if len(loader) == 0 and start_epoch < epochs:  # checked above; a guard for odd datasets
                raise ValueError(
                    f"batch_size: {batch_size} per rank exceeds the {len(loader.sampler)} samples "
                    f"each of the {ctx.world_size} rank(s) holds, so no batch would run (batches "
                    "are dropped when incomplete); lower batch_size or give more data"
                )
            hist: list[float] = []
            samples, t0 = 0, time.perf_counter()
            # counts the run's epochs: a resumed run starts at start_epoch of epochs
            bar = progress_bar(
                range(start_epoch, epochs),
                desc="train_ddp",
                total=epochs,
                initial=min(start_epoch, epochs),  # a shorter resumed run: not 3/2
                progress=progress and ctx.is_main,
            )
            msg = f"trained epochs {start_epoch}..{epochs - 1}"
            if start_epoch >= epochs:  # "trained epochs 3..1": a resumed run had nothing to do
                done = f"the checkpoint holds epochs 0..{start_epoch - 1}; " if start_epoch else ""
                msg = f"trained no epoch ({done}epochs={epochs})"
            for epoch in bar:
                # the state this epoch starts from: a diverged epoch is rolled back to it
                good = (  # on the CPU: no second copy of the weights and moments on the GPU
                    cpu_copy(unwrap(model).state_dict()),
                    cpu_copy(optimizer.state_dict()),
                    step,
                )
                loader.sampler.set_epoch(epoch)
                _seed_torch(stream_seed(seed, "train_ddp/epoch", epoch, ctx.rank), cuda)
                net.train()
                # summed on the device: a float() per batch waited for the GPU every step
                total, count = torch.zeros((), dtype=torch.float64, device=ctx.device), 0
                for batch in loader:
                    batch = _to(batch, ctx.device)
                    optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(net, batch)
                    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                        # a float failed with "'float' object has no attribute 'backward'",
                        # a per-sample loss [B] with "grad can be implicitly created only
                        # for scalar outputs"
                        got = (
                            f"a tensor of shape {tuple(loss.shape)}"
                            if isinstance(loss, torch.Tensor)
                            else type(loss).__name__
                        )
                        raise TypeError(
                            f"loss_fn: expected a scalar tensor loss (one value, with its graph), "
                            f"received {got}; return e.g. the batch mean"
                        )
                    loss.backward()
                    optimizer.step()
                    total += loss.detach().to(torch.float64).sum()  # a [1] loss too
                    count += 1
                    step += 1
                    samples += batch_size * ctx.world_size
                # a step taken on a finite loss can still leave non-finite weights (a NaN or
                # infinite gradient in the epoch's last batch), or a non-finite optimizer state
                # with finite weights (a huge finite gradient overflowing Adam's squared
                # average: the weights it touched are frozen from then on, never NaN): such an
                # epoch diverged too; its mean is made NaN on the device (no extra wait and no
                # extra collective), so all ranks agree
                weights_ok = _weights_finite(params)
                state_ok = _state_finite(optimizer, params[0].device) if params else None
                finite = weights_ok
                if state_ok is not None:
                    finite = state_ok if finite is None else finite & state_ok
                local = total / max(count, 1)
                if finite is not None:
                    local = torch.where(finite, local, torch.full_like(local, math.nan))
                mean = all_reduce_mean(local, ctx)
                if not math.isfinite(mean):
                    # every rank sees the same mean: all roll back together (no NaN weights)
                    unwrap(model).load_state_dict(good[0])
                    optimizer.load_state_dict(good[1])
                    step = good[2]
                    why = f"loss {mean}"
                    if weights_ok is not None and not bool(weights_ok):
                        why = "non-finite weights after its steps"
                    elif state_ok is not None and not bool(state_ok):
                        why = "non-finite optimizer state after its steps, with finite weights"
                    msg = f"diverged at epoch {epoch} ({why}); restored the state it started from"
                    break
                hist.append(mean)
                bar.set_postfix(loss=f"{mean:.4g}", refresh=False)
                if ckpt_path is not None:
                    save_training_checkpoint(
                        ckpt_path,
                        model=model,
                        optimizer=optimizer,
                        epoch=epoch,
                        step=step,
                        ctx=ctx,
                        config=config,
                        settings=settings,
                    )
            bar.close()
            seconds = time.perf_counter() - t0
            return FitResult(
                loss_history=hist,
                seconds=seconds,
                converged=not msg.startswith("diverged"),
                steps=step,
                message=msg,
                extra={
                    "world_size": ctx.world_size,
                    "rank": ctx.rank,
                    "start_epoch": start_epoch,
                    "samples_per_second": samples / seconds if seconds > 0 else float("nan"),
                    "model": model,
                },
            )
    finally:
        if model is not None:  # the last step's gradients: read by nothing after the run
            release_grads(model)
        # the DDP wrapper (its reducer holds the process group) goes now: this frame can
        # outlive the call (a traceback kept by torch's lazy imports during the first
        # optimizer's construction refers to it), and a wrapper alive after the caller's
        # cleanup_distributed tears the gloo group down at exit, after its peers are gone,
        # which aborts the process ("terminate called without an active exception")
        net = None  # noqa: F841
        cleanup_distributed(ctx)
