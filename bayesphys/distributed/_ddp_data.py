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

from .._checks import check_bool, check_int, check_seed
from ._process_group import DistContext

__all__ = ["distributed_loader"]


class _TensorBatchLoader(DataLoader):
    """A loader of a :class:`~torch.utils.data.TensorDataset` that fetches each batch by one
    index per tensor, ``[t[idx] for t in dataset.tensors]``, instead of one ``__getitem__``
    per sample and a ``torch.stack`` per tensor (the default collation, 40 % of an epoch of a
    small MLP at batch 128): the same batches (the list of tensors the default collation
    gives), the same sampler and batch sampler, the dataset itself untouched. With worker
    processes it loads as any ``DataLoader`` does."""

    def __iter__(self):
        if self.num_workers > 0:
            return super().__iter__()
        return self._batches()

    def _batches(self):
        tensors = self.dataset.tensors
        for indices in self.batch_sampler:
            idx = torch.as_tensor(indices, dtype=torch.long)
            yield [t[idx.to(t.device)] for t in tensors]


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
    ``loader.sampler.set_epoch(epoch)`` each epoch for a fresh, rank-consistent shuffle: the
    permutation of epoch ``e`` is ``torch.randperm`` of a generator seeded with ``seed + e``
    (torch's ``DistributedSampler``), so loaders of neighbouring seeds deal the same shuffles
    one epoch apart: ``(seed + 1, e)`` shuffles as ``(seed, e + 1)``. Derive the seeds of runs
    meant to be independent by :func:`bayesphys.stream_seed` when that matters, as
    :func:`train_ddp` does. ``seed`` is any int in ``[-2**63, 2**64 - 1]`` (torch's seed
    range). Tensors (a plain ``TensorDataset``) are fetched a batch at a time, one index per
    tensor (``[t[idx] for t in tensors]``, the batches of the default sample-by-sample
    collation) when ``num_workers=0``.
    """
    if not isinstance(ctx, DistContext):
        raise TypeError(
            f"ctx: expected a DistContext (from init_distributed), received {type(ctx).__name__}"
        )
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_seed("seed", seed)
    shuffle = check_bool("shuffle", shuffle)
    drop_last = check_bool("drop_last", drop_last)
    num_workers = check_int("num_workers", num_workers, minimum=0)
    ds = _as_dataset(data)
    sampler = DistributedSampler(
        ds,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=shuffle,
        # the same generator state as ``seed`` (torch reads seeds modulo 2**64), held as a
        # signed 64-bit value: the sampler seeds ``seed + epoch``, and a seed near 2**64 - 1
        # overflowed there from the first epoch past the range on
        seed=seed - 2**64 if seed >= 2**63 else seed,
        drop_last=drop_last,
    )
    # a plain TensorDataset (the tensors given here) is fetched a batch at a time
    loader = _TensorBatchLoader if type(ds) is TensorDataset else DataLoader
    return loader(
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
