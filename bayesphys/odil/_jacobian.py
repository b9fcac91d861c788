r"""Jacobian products of a residual ``fn: x [n] -> r [m]``: the matrix-free :math:`Jv` and
:math:`J^\top w` closures on one recorded graph, and the dense Jacobian ``[m, n]`` with its memory
check (used by :func:`~bayesphys.odil.minimize` and :mod:`~bayesphys.odil.laplace`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_dense_memory
from .._model import autograd_on
from ._forward_mode import jacfwd


def _rowwise(v: Tensor) -> bool:
    """Whether a batch of tangents ``v [k, ...]`` is taken one row at a time: on the CPU a loop
    of single backward passes gives the batched pass's values bit for bit and runs about 12 %
    faster (the batched pass's vmap costs more than it saves there); elsewhere one batched
    pass."""
    return v.device.type == "cpu" and v.shape[0] > 0


def jvp_vjp(
    fn: Callable[[Tensor], Tensor], x: Tensor
) -> tuple[Tensor, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    r"""Return ``(r, Jv, JTw)``: the residual at ``x`` and closures for :math:`Jv` and
    :math:`J^\top w` (``Jv`` also takes a batch of tangents ``[k, n]`` and returns ``[k, m]``;
    ``JTw`` a batch ``[k, m]`` and returns ``[k, n]``).

    One graph of :math:`r(x)` is recorded; :math:`J^\top w` is a reverse-mode product on it and
    :math:`Jv` the "double-vjp" product :math:`\partial_u (J^\top u)\cdot v` (exact, and on CPU
    much cheaper than re-running the forward pass in forward mode for every CG iteration).
    The graph is recorded in any caller's mode, ``torch.inference_mode()`` included.
    """
    with autograd_on():
        xx = x.detach().clone().requires_grad_(True)
        r = fn(xx)
        u0 = torch.zeros_like(r, requires_grad=True)
        (g,) = torch.autograd.grad(r, xx, u0, create_graph=True)

    def jv(v: Tensor) -> Tensor:
        with autograd_on():
            if not g.requires_grad:  # J^T u does not depend on u: J = 0
                return r.new_zeros((*v.shape[:-1], *r.shape))
            # v [k, n]: k products in one batched backward pass (on the CPU one pass per
            # row: the same values, and cheaper than the batched pass's vmap)
            batched = v.ndim == 2 and r.ndim == 1
            if batched and _rowwise(v):
                return torch.stack([jv(vi) for vi in v])
            out = torch.autograd.grad(g, u0, v, retain_graph=True, is_grads_batched=batched)
            return out[0].detach()

    def jtw(w: Tensor) -> Tensor:
        with autograd_on():
            # w [k, m]: k products in one batched backward pass, as for jv
            batched = w.ndim == r.ndim + 1
            if batched and _rowwise(w):
                return torch.stack([jtw(wi) for wi in w])
            out = torch.autograd.grad(r, xx, w, retain_graph=True, is_grads_batched=batched)
            return out[0].detach()

    return r.detach(), jv, jtw


def check_dense_gn_memory(name: str, m: int, x: Tensor, alternative: str) -> None:
    r"""Refuse a dense Gauss-Newton solve of ``m`` residuals in the ``n = x.numel()`` unknowns
    ``x`` that cannot fit on ``x``'s device: the Jacobian ``[m, n]`` (and forward mode's
    tangents of the same size) and :math:`J^\top J` ``[n, n]`` with its factor or inverse,
    in ``x``'s dtype. ``name``: the argument that chose the dense path."""
    n = x.numel()
    check_dense_memory(
        name,
        (2 * m * n + 2 * n * n) * x.element_size(),
        what=f"a dense Jacobian [{m}, {n}] and Gauss-Newton matrix [{n}, {n}] ({x.dtype})",
        alternative=alternative,
        device=x.device,
    )


def dense_jacobian(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Dense Jacobian ``[m, n]`` of ``fn`` at ``x`` (forward mode; for small problems), in
    ``x``'s dtype: ``torch.func.jacfwd`` returns float64 rows for a 0-dim float32 value combined
    with a Python number (``p - 1000.0``), which the float32 solve then refused."""
    return jacfwd(fn, x).to(x.dtype)
