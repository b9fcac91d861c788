r"""Finite-difference / finite-volume stencils on regular grids.

All operators act on the trailing ``ndim`` axes of a tensor ``u [..., n_1, ..., n_d]`` (leading
axes, e.g. time levels, are batch) and return tensors of the same shape.

* :func:`shift` -- :math:`u_{i+k}` along one axis with a boundary rule (``periodic``,
  ``neumann`` = mirror of the edge value, ``zero``);
* :func:`d1` -- first derivative: ``central`` :math:`(u_{i+1}-u_{i-1})/2h` (2nd order),
  ``backward`` :math:`(u_i-u_{i-1})/h`, ``forward`` (1st order);
* :func:`d2` -- :math:`(u_{i+1}-2u_i+u_{i-1})/h^2` (2nd order); :func:`laplacian` sums it;
* :func:`face_average` / :func:`div_flux` -- the conservative finite-volume operator
  :math:`\sum_k [D_{i+1/2}(u_{i+1}-u_i) - D_{i-1/2}(u_i-u_{i-1})]/h_k^2` with face coefficients;
  a face with :math:`D=0` carries no flux (how the glioma model imposes no flux into CSF).

Shared by the problem generators (the Fisher-Kolmogorov simulator) and the ODIL engine
(:mod:`bayesphys.odil`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["shift", "d1", "d2", "laplacian", "face_average", "div_flux"]

_BCS = ("periodic", "neumann", "zero")


def shift(u: Tensor, axis: int, k: int, bc: str = "periodic") -> Tensor:
    r"""Return :math:`v_i = u_{i+k}` along ``axis`` (``k`` = +-1, +-2 ...) with boundary rule ``bc``."""
    if bc not in _BCS:
        raise ValueError(f"bc: expected one of {_BCS}, received {bc!r}")
    if k == 0:
        return u
    if bc == "periodic":
        return torch.roll(u, shifts=-k, dims=axis)
    n = u.shape[axis]
    m = min(abs(k), n)
    if k > 0:
        body = u.narrow(axis, m, n - m)
        edge = u.narrow(axis, n - 1, 1).expand_as(u.narrow(axis, 0, m))
        if bc == "zero":
            edge = torch.zeros_like(edge)
        return torch.cat([body, edge], dim=axis)
    body = u.narrow(axis, 0, n - m)
    edge = u.narrow(axis, 0, 1).expand_as(u.narrow(axis, 0, m))
    if bc == "zero":
        edge = torch.zeros_like(edge)
    return torch.cat([edge, body], dim=axis)


def d1(u: Tensor, axis: int, h: float, scheme: str = "central", bc: str = "periodic") -> Tensor:
    """First derivative along ``axis``; ``scheme`` in ``central`` | ``backward`` | ``forward``."""
    if scheme == "central":
        return (shift(u, axis, 1, bc) - shift(u, axis, -1, bc)) / (2 * h)
    if scheme == "backward":
        return (u - shift(u, axis, -1, bc)) / h
    if scheme == "forward":
        return (shift(u, axis, 1, bc) - u) / h
    raise ValueError(f"scheme: expected 'central', 'backward' or 'forward', received {scheme!r}")


def d2(u: Tensor, axis: int, h: float, bc: str = "periodic") -> Tensor:
    """Second derivative :math:`(u_{i+1} - 2u_i + u_{i-1})/h^2` along ``axis``."""
    return (shift(u, axis, 1, bc) - 2 * u + shift(u, axis, -1, bc)) / (h * h)


def laplacian(u: Tensor, spacing: Sequence[float], bc: str = "periodic") -> Tensor:
    """Sum of :func:`d2` over the last ``len(spacing)`` axes."""
    nd = len(spacing)
    return sum(d2(u, u.ndim - nd + k, spacing[k], bc) for k in range(nd))


def face_average(a: Tensor, axis: int) -> Tensor:
    r"""Coefficient on the faces :math:`i+1/2` along ``axis``: :math:`(a_i + a_{i+1})/2`.

    Returns a tensor of ``a``'s shape whose entry ``i`` is the face between ``i`` and ``i+1``;
    the last face (outside the grid) is 0, so no flux leaves the domain.
    """
    n = a.shape[axis]
    nxt = shift(a, axis, 1, "neumann")
    f = 0.5 * (a + nxt)
    shape = [1] * a.ndim
    shape[axis] = n
    last = torch.ones(n, dtype=a.dtype, device=a.device)
    last[-1] = 0
    return f * last.reshape(shape)


def div_flux(u: Tensor, faces: Sequence[Tensor], spacing: Sequence[float]) -> Tensor:
    r"""Conservative :math:`\nabla\cdot(D\nabla u)` with face coefficients ``faces[k]``.

    ``faces[k]`` (shape of the spatial grid) holds :math:`D_{i+1/2}` along spatial axis ``k``
    (see :func:`face_average`); ``u`` is ``[..., *grid]``. The sum over cells of the result is
    exactly zero (telescoping fluxes), i.e. mass is conserved by the discrete operator.
    """
    nd = len(spacing)
    out = torch.zeros_like(u)
    for k in range(nd):
        ax = u.ndim - nd + k
        fp = faces[k]
        fm = shift(fp, k, -1, "zero")  # face i-1/2 = face (i-1)+1/2, zero at the first cell
        up = shift(u, ax, 1, "neumann")
        um = shift(u, ax, -1, "neumann")
        out = out + (fp * (up - u) - fm * (u - um)) / (spacing[k] ** 2)
    return out
