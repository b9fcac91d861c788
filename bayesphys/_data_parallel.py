r"""Data-parallel training inside a model's own ``fit`` loop (neural processes, Meta Flow Matching).

:class:`~torch.nn.parallel.DistributedDataParallel` reduces gradients from hooks that its own
``forward`` arms, so it fits loops that call one module. The amortised models here compute their
loss through several sub-networks and methods (an ELBO over a forward and an inverse network; a
flow field plus a GNN stepped on alternate iterations), so :class:`GradientSync` does the same two
things DDP does, explicitly:

1. at construction, parameters and buffers are broadcast from rank 0 (identical replicas);
2. after every ``loss.backward()``, :meth:`GradientSync.average_gradients` all-reduces the
   gradients in one flat bucket and divides by the world size :math:`W`, so each replica steps with

   .. math:: g = \frac1W \sum_{r=1}^{W} \nabla_\theta \ell_r(\theta),

   the gradient of the mean loss over the :math:`W` per-rank batches (an effective batch
   :math:`W` times larger, as with DDP).

Each rank draws its own batches: :func:`rank_generator_seed` gives rank ``r > 0`` a stream split
from rank 0's, and rank 0 keeps the single-process stream, so ``W = 1`` reproduces a plain fit.
Without a process group (a plain ``python script.py``) everything here is a no-op.

Launch a model's fit on two CPU processes::

    torchrun --standalone --nproc_per_node=2 examples/ddp_training.py --model rgnp
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["GradientSync", "rank_generator_seed"]


def _active_group() -> tuple[int, int] | None:
    """``(rank, world_size)`` of an initialised group with more than one process, else ``None``."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return None


def _reduce_device() -> torch.device:
    """Where a collective on a scalar may run: the current CUDA device under NCCL (which has no
    CPU tensors), else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def rank_generator_seed(generator: torch.Generator) -> None:
    """Split ``generator``'s stream by rank: rank 0 keeps it, rank ``r > 0`` is reseeded from a
    draw of it plus ``r`` (so ranks draw different batches, reproducibly)."""
    grp = _active_group()
    if grp is None or grp[0] == 0:
        return
    base = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    generator.manual_seed(base + 1_000_003 * grp[0])


class GradientSync:
    """Gradient averaging for ``module`` across the ranks of the default process group.

    ``active`` is ``False`` (and every method a no-op) without a group of two or more processes.
    ``module`` may be any ``nn.Module`` (a ``ModuleDict`` of sub-networks included); its parameters
    must be the same on every rank in number and shape.
    """

    def __init__(self, module: torch.nn.Module, *, broadcast: bool = True):
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module: expected a torch.nn.Module, received {type(module).__name__}")
        self.module = module
        grp = _active_group()
        self.active = grp is not None
        self.rank, self.world_size = grp if grp is not None else (0, 1)
        if self.active and broadcast:
            self.broadcast()

    @property
    def is_main(self) -> bool:
        """True on rank 0 (do I/O and show progress only there)."""
        return self.rank == 0

    @torch.no_grad()
    def broadcast(self) -> None:
        """Copy rank 0's parameters and buffers to every rank."""
        if not self.active:
            return
        for t in [*self.module.parameters(), *self.module.buffers()]:
            dist.broadcast(t.data, src=0)

    @torch.no_grad()
    def average_gradients(self) -> None:
        """All-reduce the gradients present (``.grad`` not ``None``) and divide by ``W``.

        Every rank must call it at the same point, with gradients on the same parameters.
        """
        if not self.active:
            return
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        i = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[i : i + n].view_as(g))
            i += n

    def mean(self, value: Tensor | float) -> float:
        r"""The mean :math:`\frac1R\sum_r v_r` of a scalar over the ``R`` ranks (loss
        reporting): ``value`` a float or a one-element tensor (``[]``); a float back."""
        v = torch.as_tensor(value, dtype=torch.float64).detach().reshape(1).clone()
        v = v.to(_reduce_device() if self.active else "cpu")
        if self.active:
            dist.all_reduce(v)
            v /= self.world_size
        return float(v)
