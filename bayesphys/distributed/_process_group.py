r"""Process groups for data-parallel training on ``torch.distributed``.

:func:`init_distributed` / :func:`cleanup_distributed` (from torchrun's ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), a port and environment for ranks started by
hand (:func:`free_port`, :func:`set_local_rank_env`), per-rank seeds (:func:`seed_for_rank`),
:func:`rank_zero_only`, :func:`unwrap` and :func:`all_reduce_mean`
(:math:`\frac1W\sum_r v_r` over the ``W`` ranks). Re-exported by
:mod:`bayesphys.distributed.ddp`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import gc
import numbers
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from .._checks import check_int, check_real, check_seed
from .._device import resolve_device

_BACKENDS = ("gloo", "nccl", "mpi")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size``, its device and backend.

    ``backend`` is ``None`` for a plain single process (no process group). The fields are
    checked when the context is made (``0 <= rank < world_size``, ``local_rank >= 0``, a cpu
    or cuda ``device``, a string one turned into a :class:`torch.device`, a backend torch
    knows), each refused by name: a context with ``rank=-1`` or ``world_size=0`` was made and
    misled every helper it was passed to.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    initialized_here: bool = False

    def __post_init__(self) -> None:
        world_size = check_int("world_size", self.world_size, minimum=1)
        rank = check_int("rank", self.rank, minimum=0)
        if rank >= world_size:
            raise ValueError(
                f"rank: expected 0 <= rank < world_size = {world_size}, received {rank}"
            )
        local_rank = check_int("local_rank", self.local_rank, minimum=0)
        device = _context_device(self.device)
        _check_group_backend(self.backend)
        if not isinstance(self.initialized_here, bool):
            raise TypeError(
                "initialized_here: expected a bool, received "
                f"{type(self.initialized_here).__name__}"
            )
        for name, value in (
            ("rank", rank),
            ("world_size", world_size),
            ("local_rank", local_rank),
            ("device", device),
        ):
            object.__setattr__(self, name, value)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None and self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when ``RANK`` and ``WORLD_SIZE`` are set (torchrun, SLURM wrappers, mp tests)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


#: the lowest port :func:`free_port` draws (below it: well-known services, Ray's worker ports)
_PORT_FLOOR = 20000


def _ephemeral_range() -> tuple[int, int]:
    """``(low, high)``: the ports the OS hands out by itself (Linux's
    ``ip_local_port_range``; elsewhere the IANA dynamic range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            low, high = (int(v) for v in fh.read().split())
        return low, high
    except (OSError, ValueError):
        return 49152, 65535


def _draw_port(low: int, high: int) -> int:
    """A uniformly random port in ``[low, high)`` (not seeded: concurrent callers differ)."""
    return low + secrets.randbelow(high - low)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(tries: int = 64) -> int:
    """A free TCP port on the loopback interface (for single-node rendezvous).

    Drawn at random from the ports the OS never hands out by itself: between
    ``_PORT_FLOOR`` (20000) and the low end of the ephemeral range (Linux's
    ``ip_local_port_range``, 32768 by default), or above its high end when that gap is empty,
    and checked free by binding it. A port from ``bind(("", 0))`` lies in the ephemeral range,
    from which the kernel also takes the local port of every outgoing connection, so between
    this call and rank 0 binding it any process on the machine could take it (a two-process
    run started beside other jobs failed that way); here only a process that chooses the same
    port on purpose can. Falls back to ``bind(0)`` after ``tries`` taken draws.
    """
    tries = check_int("tries", tries, minimum=1)
    low, high = _ephemeral_range()
    span = (_PORT_FLOOR, low) if low - _PORT_FLOOR >= 1000 else (high + 1, 65536)
    if span[1] - span[0] >= 1000:
        for _ in range(tries):
            port = _draw_port(*span)
            if _bindable(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def set_local_rank_env(rank: int, world_size: int, port: int) -> None:
    """Set the torchrun variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` =
    loopback, ``MASTER_PORT``) for a rank started on this machine by ``torch.multiprocessing``,
    so that :func:`init_distributed` finds them as under ``torchrun``. ``world_size >= 1``,
    ``0 <= rank < world_size`` and ``port`` in ``1..65535`` (e.g. :func:`free_port`) are
    checked before anything is set: a port beyond them was written and failed only in
    :func:`init_distributed`, with torch's "port must have value from 0 to 65535"."""
    world_size = check_int("world_size", world_size, minimum=1)
    rank = check_int("rank", rank)
    if not (0 <= rank < world_size):
        raise ValueError(f"rank: expected 0 <= rank < world_size = {world_size}, received {rank}")
    port = check_int("port", port, minimum=1)
    if port > 65535:
        raise ValueError(f"port: expected a TCP port in 1..65535, received {port}")
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )


def _env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """The environment variable ``name`` as an int (``default`` when unset), refused by name
    when it is not an integer or below ``minimum``."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or (minimum is not None and value < minimum):
        at_least = "" if minimum is None else f" >= {minimum}"
        raise ValueError(
            f"{name}: expected an integer environment variable{at_least}, received {raw!r}"
        )
    return value


def _serves_cuda(backend: str) -> bool:
    """Whether a group's backend reduces CUDA tensors: ``"nccl"``, or a per-device map such as
    ``"cpu:gloo,cuda:nccl"`` (what ``init_process_group()`` without a backend makes on a CUDA
    build)."""
    return "nccl" in str(backend)


def _context_from_group(device: torch.device | None) -> DistContext:
    rank, ws = dist.get_rank(), dist.get_world_size()
    local = _env_int("LOCAL_RANK", rank, minimum=0)
    backend = dist.get_backend()
    if device is None:
        # a group of "cpu:gloo,cuda:nccl" is a CUDA group too (it trained on the CPU, silently)
        cuda = _serves_cuda(backend) and torch.cuda.is_available()
        device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if device.type == "cuda":
        # as for a group made here: each rank's current device is its own (NCCL collectives
        # run on the current device; every rank on cuda:0 failed or hung)
        if device.index is None:
            device = torch.device(f"cuda:{local}")
        torch.cuda.set_device(device)
    return DistContext(rank, ws, local, device, backend, False)


def _env_rank_world() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` from the environment, checked (``0 <= RANK < WORLD_SIZE``)."""
    rank, ws = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    if ws < 1:
        raise ValueError(f"WORLD_SIZE: expected an int >= 1, received {ws}")
    if not 0 <= rank < ws:
        raise ValueError(f"RANK: expected 0 <= RANK < WORLD_SIZE = {ws}, received {rank}")
    return rank, ws


def planned_world() -> tuple[int, int]:
    """``(rank, world_size)`` that :func:`init_distributed` will give, without starting a group:
    the existing group's, else torchrun's variables, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if launched_by_torchrun():
        return _env_rank_world()
    return 0, 1


def _context_device(device: Any) -> torch.device:
    """A context's ``device`` as a :class:`torch.device` of type cpu or cuda (its name too);
    not checked present, as :func:`check_device` does for what the user asks of
    :func:`init_distributed`: a context records the device a group was set up on."""
    if isinstance(device, str):
        try:
            device = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"device: expected 'cpu', 'cuda' or 'cuda:N', received {device!r}"
            ) from None
    if not isinstance(device, torch.device):
        raise TypeError(
            f"device: expected a torch.device or its name, received {type(device).__name__}"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"device: expected a cpu or cuda device (gloo or NCCL), received {str(device)!r}"
        )
    return device


def _check_group_backend(backend: Any) -> None:
    """A context's ``backend``: ``None`` or what ``dist.get_backend()`` may report, a backend
    torch knows (``"gloo"``, ``"nccl"``, ``"mpi"``, one registered with it) or a per-device map
    of them (``"cpu:gloo,cuda:nccl"``)."""
    if backend is None:
        return
    if not isinstance(backend, str):
        raise TypeError(f"backend: expected a str or None, received {type(backend).__name__}")
    known = set(getattr(dist.Backend, "backend_list", _BACKENDS)) - {"undefined"}
    parts = [p.rpartition(":")[2].strip().lower() for p in backend.split(",")]
    if not all(p in known for p in parts):
        raise ValueError(
            f"backend: expected one of {sorted(known)}, a per-device map of them "
            f"('cpu:gloo,cuda:nccl') or None, received {backend!r}"
        )


def check_backend(backend: str | None) -> None:
    if backend is not None and backend not in _BACKENDS:
        raise ValueError(f"backend: expected one of {_BACKENDS} or None, received {backend!r}")


def check_device(device: str | torch.device | None) -> torch.device | None:
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
    check_backend(backend)
    timeout_s = check_real("timeout_s", timeout_s, minimum=0.0, strict=True)
    dev = check_device(device)
    if dist.is_available() and dist.is_initialized():
        return _context_from_group(dev)
    if not launched_by_torchrun():
        if dev is None:
            dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistContext(0, 1, 0, dev, None, False)
    if not dist.is_available():  # pragma: no cover - torch built without distributed
        raise RuntimeError("torch.distributed is not available in this torch build")
    rank, ws = _env_rank_world()
    local = _env_int("LOCAL_RANK", rank, minimum=0)
    if dev is None:
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device(f"cuda:{local}")
        torch.cuda.set_device(dev)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if backend == "gloo" and os.environ.get("MASTER_ADDR", "") in ("127.0.0.1", "localhost"):
        loopback = _loopback_interface()
        if loopback is not None:
            os.environ.setdefault("GLOO_SOCKET_IFNAME", loopback)
    dist.init_process_group(
        backend,
        init_method="env://",
        rank=rank,
        world_size=ws,
        timeout=_dt.timedelta(seconds=timeout_s),
    )
    return DistContext(rank, ws, local, dev, backend, True)


def _loopback_interface() -> str | None:
    """The loopback interface's name for gloo on a one-machine run: ``lo`` (Linux) or ``lo0``
    (macOS, the BSDs); ``None`` where there is neither (Windows), leaving gloo its own choice
    (a fixed ``lo`` made every local run fail at rendezvous on macOS)."""
    import socket

    try:
        names = {name for _, name in socket.if_nameindex()}
    except (OSError, AttributeError):
        return None
    return next((n for n in ("lo", "lo0") if n in names), None)


_CLEANUP_KEY = "bayesphys/cleanup_done"


def cleanup_distributed(ctx: DistContext | None = None, *, timeout_s: float = 60.0) -> None:
    """Destroy the process group (only the one ``ctx`` created, when ``ctx`` is given).

    With several ranks the shutdown is ordered: all ranks meet at a barrier, destroy their
    group, and rank 0 (which hosts the rendezvous store under ``env://``) waits up to
    ``timeout_s`` seconds until every other rank has reported its group destroyed before it
    returns. Without that order rank 0 can exit first and take the store with it while another
    rank is still tearing down, which aborts that rank (``terminate called without an active
    exception``).

    Unreachable objects that still hold the group (a ``DistributedDataParallel`` wrapper's
    reducer caught in a reference cycle, e.g. through a frame kept by an import-time traceback)
    are collected first (``gc.collect()``), so the group is freed here, while every rank is
    still up, and not at some later collection or at interpreter exit, where a gloo group torn
    down after its peers have gone can abort the process.
    """
    if ctx is not None:
        _check_ctx(ctx)
    timeout_s = check_real("timeout_s", timeout_s, minimum=0.0, strict=True)
    if ctx is not None and not ctx.initialized_here:
        return
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()  # a reducer in a cycle would keep the group past destroy_process_group
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
    that must not meet across seeds use :func:`bayesphys.stream_seed`). ``seed`` an int seed,
    ``rank >= 0`` an int; anything else is refused by name (``int()`` truncated a float seed
    or rank, and a context or ``None`` failed inside ``int``)."""
    seed = check_seed("seed", seed)
    rank = check_int("rank", rank, minimum=0)
    return (seed + 104_729 * rank) % 2**63


def rank_zero_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: call ``fn`` on rank 0 only (returns ``None`` elsewhere). ``fn`` must be
    callable: anything else was wrapped, and failed only when called, on rank 0 alone."""
    if not callable(fn):
        raise TypeError(f"fn: expected a callable to decorate, received {type(fn).__name__}")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _rank() == 0:
            return fn(*args, **kwargs)
        return None

    return wrapper


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside a :class:`~torch.nn.parallel.DistributedDataParallel` wrapper."""
    return model.module if isinstance(model, DDP) else model


def _check_ctx(ctx: Any) -> None:
    """``ctx``: a :class:`DistContext` (an int or ``None`` failed with an ``AttributeError``)."""
    if not isinstance(ctx, DistContext):
        raise TypeError(
            f"ctx: expected a DistContext (from init_distributed), received {type(ctx).__name__}"
        )


def all_reduce_mean(value: torch.Tensor | float, ctx: DistContext) -> float:
    """Mean of a scalar over ranks (the value itself in a single process): ``value`` a real
    number or a one-element tensor (a NaN is averaged as it is), ``ctx`` a
    :class:`DistContext`."""
    _check_ctx(ctx)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            # torch's "only one element tensors can be converted to Python scalars"
            raise ValueError(
                f"value: expected a scalar (a number or a one-element tensor), received a "
                f"tensor of shape {tuple(value.shape)}"
            )
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"value: expected a scalar (a number or a one-element tensor), received "
            f"{type(value).__name__}"
        )
    t = torch.as_tensor(value, dtype=torch.float64, device=ctx.device).detach().clone()
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= ctx.world_size
    return float(t)
