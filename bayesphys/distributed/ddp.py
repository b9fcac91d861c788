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
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), :func:`distributed_loader`,
:func:`seed_for_rank`, :func:`rank_zero_only`, :func:`save_training_checkpoint` /
:func:`load_training_checkpoint` (resume), and the generic loop :func:`train_ddp`. Training
loops written with them keep no global state and do I/O on rank 0 only.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from .._checks import check_int, check_real, check_seed, stream_seed
from .._device import resolve_device
from .._model import FitResult, load_checkpoint, save_checkpoint

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

CHECKPOINT_KIND = "ddp_training"
_BACKENDS = ("gloo", "nccl", "mpi")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size``, its device and backend.

    ``backend`` is ``None`` for a plain single process (no process group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None and self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when ``RANK`` and ``WORLD_SIZE`` are set (torchrun, SLURM wrappers, mp tests)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def free_port() -> int:
    """A free TCP port on the loopback interface (for single-node rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def set_local_rank_env(rank: int, world_size: int, port: int) -> None:
    """Set the torchrun variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` =
    loopback, ``MASTER_PORT``) for a rank started on this machine by ``torch.multiprocessing``,
    so that :func:`init_distributed` finds them as under ``torchrun``."""
    if not (0 <= rank < world_size):
        raise ValueError(f"rank: expected 0 <= rank < world_size = {world_size}, received {rank}")
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(int(port)),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ValueError(
            f"{name}: expected an integer environment variable, received {raw!r}"
        ) from err


def _context_from_group(device: torch.device | None) -> DistContext:
    rank, ws = dist.get_rank(), dist.get_world_size()
    local = _env_int("LOCAL_RANK", rank)
    backend = dist.get_backend()
    if device is None:
        device = torch.device(f"cuda:{local}") if backend == "nccl" else torch.device("cpu")
    return DistContext(rank, ws, local, device, backend, False)


def _env_rank_world() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` from the environment, checked (``0 <= RANK < WORLD_SIZE``)."""
    rank, ws = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    if ws < 1:
        raise ValueError(f"WORLD_SIZE: expected an int >= 1, received {ws}")
    if not 0 <= rank < ws:
        raise ValueError(f"RANK: expected 0 <= RANK < WORLD_SIZE = {ws}, received {rank}")
    return rank, ws


def _planned_world() -> tuple[int, int]:
    """``(rank, world_size)`` that :func:`init_distributed` will give, without starting a group:
    the existing group's, else torchrun's variables, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if launched_by_torchrun():
        return _env_rank_world()
    return 0, 1


def _check_backend(backend: str | None) -> None:
    if backend is not None and backend not in _BACKENDS:
        raise ValueError(f"backend: expected one of {_BACKENDS} or None, received {backend!r}")


def _check_device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a :class:`torch.device` (``None`` stays ``None``), checked by
    :func:`~bayesphys.resolve_device`: a device string torch does not know, CUDA where there
    is none, or a CUDA index beyond the devices present is refused with the argument named; so
    is any device other than CPU (gloo) and CUDA (NCCL), the two torch.distributed serves here."""
    if device is None:
        return None
    dev = resolve_device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(
            f"device: expected a cpu or cuda device (gloo or NCCL), received {str(device)!r}"
        )
    return dev


def init_distributed(
    backend: str | None = None,
    device: str | torch.device | None = None,
    *,
    timeout_s: float = 300.0,
) -> DistContext:
    """Join the process group described by torchrun's environment variables.

    ``device`` defaults to ``cuda:LOCAL_RANK`` when CUDA exists, else CPU; ``backend`` to
    ``nccl`` for CUDA and ``gloo`` for CPU. Without ``RANK``/``WORLD_SIZE`` (a plain
    ``python script.py``) no process group is created and a single-process context is returned,
    so the same script runs with and without torchrun. An existing group is reused.
    """
    _check_backend(backend)
    timeout_s = check_real("timeout_s", timeout_s, minimum=0.0, strict=True)
    dev = _check_device(device)
    if dist.is_available() and dist.is_initialized():
        return _context_from_group(dev)
    if not launched_by_torchrun():
        if dev is None:
            dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistContext(0, 1, 0, dev, None, False)
    if not dist.is_available():  # pragma: no cover - torch built without distributed
        raise RuntimeError("torch.distributed is not available in this torch build")
    rank, ws = _env_rank_world()
    local = _env_int("LOCAL_RANK", rank)
    if dev is None:
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device(f"cuda:{local}")
        torch.cuda.set_device(dev)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if backend == "gloo" and os.environ.get("MASTER_ADDR", "") in ("127.0.0.1", "localhost"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        backend,
        init_method="env://",
        rank=rank,
        world_size=ws,
        timeout=_dt.timedelta(seconds=timeout_s),
    )
    return DistContext(rank, ws, local, dev, backend, True)


_CLEANUP_KEY = "bayesphys/cleanup_done"


def cleanup_distributed(ctx: DistContext | None = None, *, timeout_s: float = 60.0) -> None:
    """Destroy the process group (only the one ``ctx`` created, when ``ctx`` is given).

    With several ranks the shutdown is ordered: all ranks meet at a barrier, destroy their
    group, and rank 0 (which hosts the rendezvous store under ``env://``) waits up to
    ``timeout_s`` seconds until every other rank has reported its group destroyed before it
    returns. Without that order rank 0 can exit first and take the store with it while another
    rank is still tearing down, which aborts that rank (``terminate called without an active
    exception``).
    """
    if ctx is not None and not ctx.initialized_here:
        return
    if not (dist.is_available() and dist.is_initialized()):
        return
    rank, ws = dist.get_rank(), dist.get_world_size()
    store = None
    if ws > 1:
        dist.barrier()
        get_store = getattr(dist.distributed_c10d, "_get_default_store", None)
        store = get_store() if get_store is not None else None
    dist.destroy_process_group()
    if store is None:
        return
    if rank != 0:
        store.add(_CLEANUP_KEY, 1)
        return
    deadline = time.monotonic() + timeout_s
    while store.add(_CLEANUP_KEY, 0) < ws - 1 and time.monotonic() < deadline:
        time.sleep(0.01)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def seed_for_rank(seed: int, rank: int) -> int:
    """Per-rank seed for data noise/dropout: distinct across ranks, fixed across runs
    (``seed + 104729 rank``: rank 1 of ``seed`` is rank 0 of ``seed + 104729``; for streams
    that must not meet across seeds use :func:`bayesphys.stream_seed`)."""
    return (int(seed) + 104_729 * int(rank)) % 2**63


def rank_zero_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: call ``fn`` on rank 0 only (returns ``None`` elsewhere)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _rank() == 0:
            return fn(*args, **kwargs)
        return None

    return wrapper


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside a :class:`~torch.nn.parallel.DistributedDataParallel` wrapper."""
    return model.module if isinstance(model, DDP) else model


def all_reduce_mean(value: torch.Tensor | float, ctx: DistContext) -> float:
    """Mean of a scalar over ranks (the value itself in a single process)."""
    t = torch.as_tensor(value, dtype=torch.float64, device=ctx.device).detach().clone()
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= ctx.world_size
    return float(t)


def _as_dataset(data: Dataset | Sequence[torch.Tensor] | torch.Tensor) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, torch.Tensor):
        data = (data,)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        if any(t.dim() == 0 for t in data):
            raise ValueError(
                "data: expected tensors with a first (sample) dimension, received a 0-d tensor"
            )
        sizes = [t.shape[0] for t in data]
        if len(set(sizes)) > 1:
            raise ValueError(
                f"data: the tensors must share their first (sample) dimension, received {sizes}"
            )
        return TensorDataset(*data)
    raise TypeError(
        "data: expected a torch Dataset, a tensor or a tuple of tensors with a common first "
        f"dimension, received {type(data).__name__}"
    )


def distributed_loader(
    data: Dataset | Sequence[torch.Tensor] | torch.Tensor,
    batch_size: int,
    ctx: DistContext,
    *,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = True,
    num_workers: int = 0,
) -> DataLoader:
    """A loader whose sampler deals ``perm[rank::world_size]`` to this rank.

    ``batch_size`` is per rank (global batch ``world_size * batch_size``). Call
    ``loader.sampler.set_epoch(epoch)`` each epoch for a fresh, rank-consistent shuffle.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    ds = _as_dataset(data)
    sampler = DistributedSampler(
        ds,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    )
    return DataLoader(
        ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=num_workers
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
    """
    path = Path(path)
    failure: BaseException | None = None
    if ctx.is_main:
        tmp = path.with_name(f".{path.name}.tmp")
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
            save_checkpoint(tmp, kind=CHECKPOINT_KIND, config=dict(config or {}), state=state)
            with open(tmp, "rb") as fh:  # on disk before the rename publishes it
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as err:
            tmp.unlink(missing_ok=True)  # the previous checkpoint stays as it was
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
    """Load weights (and optimizer state) on every rank; returns the checkpoint's state dict."""
    ckpt = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=map_location)
    state = ckpt["state"]
    unwrap(model).load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    return state


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


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
        if Path(checkpoint).is_dir():
            raise ValueError(f"checkpoint: {str(checkpoint)!r} is a folder, expected a file path")
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"config: expected a mapping or None, received {type(config).__name__}")
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
        if key in saved and key in now and not _same(saved[key], now[key]):
            diffs.append(f"{names.get(key, key)}: saved {saved[key]!r}, now {now[key]!r}")
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
) -> None:
    """Refuse to resume ``ckpt`` (read from ``path``) with settings other than its own."""
    state = ckpt.get("state") or {}
    saved = state.get("settings")
    if not isinstance(saved, Mapping):  # written before the settings were recorded
        saved = {"world_size": state.get("world_size")}
    diffs = _resume_differences(dict(saved), now, ckpt.get("config"), config)
    if diffs:
        raise ValueError(
            f"checkpoint: {str(path)!r} was written by a run with other settings, so resuming "
            f"it would not continue that run exactly: {'; '.join(diffs)}. Resume with the saved "
            "settings, or start afresh with resume=False (the checkpoint is then overwritten "
            "after the first epoch) or another checkpoint path"
        )


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

    Every rank builds ``model_fn()`` after ``torch.manual_seed(seed)`` (identical replicas),
    wraps it in DDP when ``world_size > 1``, and sees ``batch_size`` samples per step (global
    batch ``world_size * batch_size``). Each epoch reseeds torch with
    ``stream_seed(seed, "train_ddp/epoch", epoch, rank)`` (a hash: runs of neighbouring seeds
    share no epoch's stream, as ``seed + epoch`` made them; so runs from versions before
    this change are not reproduced draw for draw) and the sampler with ``epoch``, so a run resumed from
    ``checkpoint`` (written by rank 0 after every epoch) continues exactly as an uninterrupted
    one. Works in a single process without torchrun.

    Resuming needs the settings the checkpoint was written with: the number of ranks
    (``world_size``), ``batch_size`` (per rank), ``len(data)``, ``seed``, ``config`` (compared
    key by key, so leave out of it what may change between resumes, such as the number of
    epochs) and the optimizer (its class and the hyperparameters of its parameter groups, e.g.
    ``lr``; a resumed optimizer would otherwise keep the saved ones without a word). Any
    difference is refused with a ``ValueError`` naming each setting, saved and now, before
    any process group or model is set up (the optimizer's once it is built, before any step);
    ``resume=False`` or another ``checkpoint`` path starts afresh. ``epochs`` may differ (a
    longer run continues, a shorter one trains nothing), as may ``device`` and ``backend``
    (the same batches and steps, computed on other hardware, so equal up to floating-point
    rounding). The contents of ``data`` are not compared, only its length. Checkpoints written
    before the settings were recorded are checked for ``world_size`` and ``config`` only.

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
    _check_device(device)
    _check_backend(backend)
    _, world = _planned_world()
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
    }
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    saved = None
    if ckpt_path is not None and resume and ckpt_path.exists():
        # read and compared on every rank alike, before any rendezvous: all ranks refuse together
        saved = load_checkpoint(ckpt_path, kind=CHECKPOINT_KIND, map_location="cpu")
        _check_resume(ckpt_path, saved, settings, config)
    ctx = init_distributed(backend, device)
    try:
        torch.manual_seed(seed)
        model = model_fn().to(ctx.device)
        params = list(model.parameters())
        optimizer = optimizer_fn(params) if optimizer_fn else torch.optim.Adam(params, lr=lr)
        settings["optimizer"] = _optimizer_settings(optimizer)
        start_epoch, step = 0, 0
        if saved is not None:
            _check_resume(ckpt_path, saved, {"optimizer": settings["optimizer"]})
            state = saved["state"]
            unwrap(model).load_state_dict(state["model"])
            if state.get("optimizer") is not None:
                optimizer.load_state_dict(state["optimizer"])
            start_epoch, step = state["epoch"] + 1, state["step"]
            del saved, state  # the weights now live in the model and the optimizer
        net = model
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            net = DDP(model, device_ids=ids)
        loader = distributed_loader(ds, batch_size, ctx, shuffle=True, seed=seed)
        if len(loader) == 0 and start_epoch < epochs:  # checked above; a guard for odd datasets
            raise ValueError(
                f"batch_size: {batch_size} per rank exceeds the {len(loader.sampler)} samples "
                f"each of the {ctx.world_size} rank(s) holds, so no batch would run (batches "
                "are dropped when incomplete); lower batch_size or give more data"
            )
        hist: list[float] = []
        samples, t0 = 0, time.perf_counter()
        from tqdm.auto import tqdm

        bar = tqdm(
            range(start_epoch, epochs), desc="train_ddp", disable=not (progress and ctx.is_main)
        )
        msg = f"trained epochs {start_epoch}..{epochs - 1}"
        for epoch in bar:
            loader.sampler.set_epoch(epoch)
            torch.manual_seed(stream_seed(seed, "train_ddp/epoch", epoch, ctx.rank))
            net.train()
            total, count = 0.0, 0
            for batch in loader:
                batch = _to(batch, ctx.device)
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(net, batch)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
                count += 1
                step += 1
                samples += batch_size * ctx.world_size
            mean = all_reduce_mean(total / max(count, 1), ctx)
            if not math.isfinite(mean):
                msg = f"diverged at epoch {epoch} (loss {mean})"
                break
            hist.append(mean)
            bar.set_postfix(loss=f"{mean:.4g}")
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
        cleanup_distributed(ctx)
