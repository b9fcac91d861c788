"""Data for data-parallel training: a loader that deals each rank its shard of every epoch.

Used by :func:`~bayesphys.distributed.ddp.train_ddp`; :func:`distributed_loader` is re-exported by
:mod:`bayesphys.distributed.ddp`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from .._checks import check_int
from ._process_group import DistContext

__all__ = ["distributed_loader"]


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


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch
