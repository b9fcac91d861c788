r"""Mode products and boundary faces on tensor-product grids.

A field on a :math:`d`-dimensional grid is a tensor ``U`` ``[n_1, ..., n_d]``; the Kronecker
product :math:`(A_1 \otimes \dots \otimes A_d)\,\mathrm{vec}(U)` (C order, last factor fastest) is
the sequence of mode products :math:`U \times_1 A_1 \cdots \times_d A_d`, cost
:math:`O(\sum_j n_j \prod_k n_k)`; no :math:`M \times M` matrix is formed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["mode_apply", "kron_apply", "faces", "face_values", "scatter_faces", "kron_dense"]


def mode_apply(a: Tensor, u: Tensor, j: int) -> Tensor:
    r"""Mode-``j`` product :math:`U \times_j A`: ``a`` ``[p, n]`` maps axis ``j`` of ``u`` (size
    ``n``) to ``p``.

    ``j`` is an axis of ``u`` itself, counted from its first dim, batch dims included (for
    ``u`` ``[*batch, n_1..n_d]`` grid dim ``k`` is ``j = len(batch) + k``, as
    :func:`kron_apply` passes it).
    """
    return torch.movedim(torch.tensordot(a, torch.movedim(u, j, 0), dims=([1], [0])), 0, j)


def kron_apply(mats: list[Tensor | None], u: Tensor) -> Tensor:
    r""":math:`(\otimes_j A_j)\,\mathrm{vec}(U)` as a grid tensor; ``None`` factors are identities.

    ``u`` ``[*batch, n_1, ..., n_d]`` with ``d = len(mats)``.
    """
    d = len(mats)
    nb = u.ndim - d
    for j, a in enumerate(mats):
        if a is not None:
            u = mode_apply(a, u, nb + j)
    return u


def kron_dense(mats: list[Tensor]) -> Tensor:
    """Dense :math:`A_1 \\otimes \\dots \\otimes A_d` (for tests and small grids only)."""
    out = mats[0]
    for a in mats[1:]:
        out = torch.kron(out, a)
    return out


def faces(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """Boundary faces ``(dim, index)`` of a grid: both ends of every dimension.

    As in the reference code, 2-D corners belong to two faces (counted twice).
    """
    return [(j, i) for j, n in enumerate(shape) for i in (0, n - 1)]


def face_values(u: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Concatenated boundary values ``[*batch, N_b]`` of ``u`` ``[*batch, *shape]``."""
    d = len(shape)
    nb = u.ndim - d
    lead = u.shape[:nb]
    # each face's size spelled out: -1 is ambiguous for an empty batch (no draws)
    parts = [
        u.select(nb + j, i).reshape(*lead, math.prod(shape) // shape[j]) for j, i in faces(shape)
    ]
    return torch.cat(parts, dim=-1)


def scatter_faces(e: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Adjoint of :func:`face_values`: ``[*batch, N_b]`` -> ``[*batch, *shape]`` (sums at
    corners)."""
    lead = e.shape[:-1]
    out = torch.zeros(*lead, *shape, dtype=e.dtype, device=e.device)
    nb = len(lead)
    k = 0
    for j, i in faces(shape):
        fshape = [n for jj, n in enumerate(shape) if jj != j]
        size = math.prod(fshape)
        part = e[..., k : k + size].reshape((*lead, *fshape))
        sl = out.select(nb + j, i)
        sl += part
        k += size
    return out
