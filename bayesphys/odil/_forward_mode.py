"""Forward-mode automatic differentiation that two threads can run at once.

PyTorch keeps the levels of forward-mode AD (the dual-tensor levels behind
:func:`torch.func.jvp` and :func:`torch.func.jacfwd`) in one process-wide list: two threads
taking forward-mode derivatives at the same time exit each other's levels ("Trying to create a
dual Tensor for forward AD but no level exists") or mix their tangents (wrong shapes, or worse,
wrong numbers). Every forward-mode call in :mod:`bayesphys.odil` runs under one process-wide
lock, so fits in a thread pool (``fit_many(executor=ThreadPoolExecutor(...))``) give the
values of fits run one after the other. A user's own forward-mode code in other threads is
not covered.

The first forward-mode call loads torch's forward-mode decompositions, which torch compiles
with ``torch.jit.script`` and so raises its own deprecation of it, from a frame inside torch: a
warning no user can act on, shown by ``PYTHONWARNINGS=always`` at every ODIL fit and, under
``python -W error``, an error that failed every ODIL fit (the half-imported module was retried,
and failed, at each call). It is loaded once, here, with exactly that message ignored and the
filters restored after it.

Both run with inference mode off (inside a caller's ``torch.inference_mode()`` block torch
2.11's ``jacfwd`` failed: "Batching rule not implemented for aten::_make_dual"); an inference
tensor ``x`` is cloned into a normal one first.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["FORWARD_MODE_LOCK", "jacfwd", "batched_jvp"]

#: held around every forward-mode derivative taken by :mod:`bayesphys.odil`
FORWARD_MODE_LOCK = threading.RLock()
_decompositions_loaded = False


def _load_decompositions() -> None:
    """Load torch's forward-mode decompositions once, without the deprecation warning of
    ``torch.jit.script`` that loading them raises (module docstring); call under the lock."""
    global _decompositions_loaded
    if _decompositions_loaded:
        return
    load = getattr(torch.autograd.forward_ad, "_maybe_load_decompositions", None)
    if load is not None:  # torch's own check of PYTORCH_JIT and -O is kept
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message=r"`torch\.jit\.script` is (deprecated|not supported)",
                category=DeprecationWarning,
            )
            load()
    _decompositions_loaded = True


def _normal(x: Tensor) -> Tensor:
    """``x``, or a normal copy of it if it is an inference tensor (call with inference mode
    off)."""
    return x.clone() if x.is_inference() else x


def jacfwd(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """:func:`torch.func.jacfwd` of ``fn`` at ``x`` (``[*out, *x]``), under the lock."""
    with FORWARD_MODE_LOCK, torch.inference_mode(False):
        _load_decompositions()
        return torch.func.jacfwd(fn)(_normal(x))


def batched_jvp(fn: Callable[[Tensor], Tensor], x: Tensor, tangents: Tensor) -> Tensor:
    """Jacobian-vector products of ``fn`` at ``x`` for each row of ``tangents [p, *x]``, one
    vmapped forward-mode pass; returns ``[*out, p]`` (the tangent index last), under the lock."""
    with FORWARD_MODE_LOCK, torch.inference_mode(False):
        _load_decompositions()
        x, tangents = _normal(x), _normal(tangents)
        return torch.func.vmap(lambda t: torch.func.jvp(fn, (x,), (t,))[1], out_dims=-1)(tangents)
