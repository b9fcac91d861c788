r"""Multigrid (Karnakov et al., EPJ E 2023): a field is represented as
:math:`u = \sum_{l=0}^{L-1} T_l u_l` with :math:`u_l` on the grid coarsened :math:`2^l` times
and :math:`T_l` (multi)linear interpolation to the finest grid. :class:`Multigrid` maps the level
coefficients to the fine field; it is linear, so Jacobians go through it unchanged. Fields of 1 to
4 axes are supported (a 3-D field with a leading time axis has 4): up to 3 axes the interpolation
is ``torch.nn.functional.interpolate``; with 4 it is the same tensor-product interpolation applied
one axis at a time (:func:`_interp_matrix`), which torch has no mode for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_int, check_int_sequence

__all__ = ["Multigrid"]


class Multigrid:
    r"""Multigrid decomposition :math:`u = \sum_l T_l u_l` of a field of shape ``shape``.

    Parameters
    ----------
    shape
        fine grid shape ``(n_1, ..., n_d)``, ``d`` in 1..4, every ``n_k >= 1`` (e.g.
        ``(n_t, n_x, n_y, n_z)`` for a 3-D field in time).
    levels
        number of levels ``L >= 1`` (level ``l`` has shape ``ceil(n_k / 2^l)``).
    axes
        which axes (ints in ``[0, d)``) are coarsened (default all).

    Notes
    -----
    ``to_fine(coeffs)`` maps the flat coefficient vector ``[M]`` (levels concatenated) to the
    field ``[*shape]``; ``from_fine(u)`` puts ``u`` on level 0 and zeros elsewhere (an exact
    preimage). ``size`` is ``M``.
    """

    def __init__(self, shape: Sequence[int], levels: int = 3, axes: Sequence[int] | None = None):
        self.shape = check_int_sequence("shape", shape, minimum=1)
        if not 1 <= len(self.shape) <= 4:
            raise ValueError(f"shape: expected 1 to 4 dimensions, received {self.shape}")
        self.levels = check_int("levels", levels, minimum=1)
        nd = len(self.shape)
        axes = tuple(range(nd)) if axes is None else tuple(check_int("axes", a) for a in axes)
        if any(not 0 <= a < nd for a in axes):
            raise ValueError(f"axes: expected axes in [0, {nd}), received {axes}")
        self.level_shapes = []
        for lvl in range(self.levels):
            s = tuple(
                max(1, math.ceil(n / 2**lvl)) if k in axes else n for k, n in enumerate(self.shape)
            )
            self.level_shapes.append(s)
        self.sizes = [math.prod(s) for s in self.level_shapes]
        self.size = sum(self.sizes)

    def to_fine(self, coeffs: Tensor) -> Tensor:
        """Coefficients ``[M]`` (a floating-point tensor) -> fine field ``[*shape]`` (linear
        interpolation, align corners)."""
        _check_float("coeffs", coeffs)
        if coeffs.shape != (self.size,):
            raise ValueError(
                f"coeffs: expected shape ({self.size},), received {tuple(coeffs.shape)}"
            )
        out = None
        off = 0
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}.get(len(self.shape))
        for s, m in zip(self.level_shapes, self.sizes):
            c = coeffs[off : off + m].reshape(s)
            off += m
            if s != self.shape:
                if mode is None:
                    c = _interp_separable(c, self.shape)
                else:
                    c = F.interpolate(
                        c[None, None], size=self.shape, mode=mode, align_corners=True
                    )[0, 0]
            out = c if out is None else out + c
        return out

    def from_fine(self, u: Tensor) -> Tensor:
        """A coefficient vector ``[M]`` whose :meth:`to_fine` is ``u`` (``u [*shape]`` on
        level 0, a floating-point tensor; the coarser levels' coefficients are 0)."""
        _check_float("u", u)
        if tuple(u.shape) != self.shape:
            raise ValueError(f"u: expected the fine shape {self.shape}, received {tuple(u.shape)}")
        z = torch.zeros(self.size - self.sizes[0], dtype=u.dtype, device=u.device)
        return torch.cat([u.reshape(-1), z])


def _check_float(name: str, t: Tensor) -> None:
    """Refuse anything but a real floating-point tensor (an array failed with "no attribute
    'dim'", an integer tensor in torch's interpolation kernel, both without the name)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, received {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, received {t.dtype}")


def _interp_matrix(n_out: int, n_in: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Linear interpolation ``[n_out, n_in]`` from ``n_in`` to ``n_out`` equispaced points with
    the end points aligned (torch's ``align_corners=True``); ``n_in = 1`` copies the value."""
    if n_in == 1 or n_out == 1:
        w = torch.zeros(n_out, n_in, dtype=dtype, device=device)
        w[:, 0] = 1.0
        return w
    pos = torch.arange(n_out, dtype=torch.float64) * ((n_in - 1) / (n_out - 1))
    lo = pos.floor().long().clamp(max=n_in - 2)
    frac = pos - lo
    w = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    w[rows, lo] = 1.0 - frac
    w[rows, lo + 1] += frac
    return w.to(dtype=dtype, device=device)


def _interp_separable(c: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Tensor-product linear interpolation of ``c`` ``[*coarse]`` to ``[*shape]``, one axis at a
    time (the same map as ``interpolate(..., align_corners=True)`` for 1-3 axes)."""
    for k, (n_out, n_in) in enumerate(zip(shape, c.shape)):
        if n_out == n_in:
            continue
        w = _interp_matrix(n_out, n_in, c.dtype, c.device)
        c = torch.movedim(torch.tensordot(w, c, dims=([1], [k])), 0, k)
    return c
