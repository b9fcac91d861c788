r"""Multigrid (Karnakov et al., EPJ E 2023): a field is represented as
:math:`u = \sum_{l=0}^{L-1} T_l u_l` with :math:`u_l` on the grid coarsened :math:`2^l` times
and :math:`T_l` (multi)linear interpolation to the finest grid. :class:`Multigrid` maps the level
coefficients to the fine field; it is linear, so Jacobians go through it unchanged.
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
    shape: fine grid shape ``(n_1, ..., n_d)``, ``d`` in 1..3, every ``n_k >= 1``.
    levels: number of levels ``L >= 1`` (level ``l`` has shape ``ceil(n_k / 2^l)``).
    axes: which axes (ints in ``[0, d)``) are coarsened (default all).

    Notes
    -----
    ``to_fine(coeffs)`` maps the flat coefficient vector ``[M]`` (levels concatenated) to the
    field ``[*shape]``; ``from_fine(u)`` puts ``u`` on level 0 and zeros elsewhere (an exact
    preimage). ``size`` is ``M``.
    """

    def __init__(self, shape: Sequence[int], levels: int = 3, axes: Sequence[int] | None = None):
        self.shape = check_int_sequence("shape", shape, minimum=1)
        if not 1 <= len(self.shape) <= 3:
            raise ValueError(f"shape: expected 1 to 3 dimensions, received {self.shape}")
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
        """Coefficients ``[M]`` -> fine field ``[*shape]`` (linear interpolation, align corners)."""
        if coeffs.shape != (self.size,):
            raise ValueError(
                f"coeffs: expected shape ({self.size},), received {tuple(coeffs.shape)}"
            )
        out = None
        off = 0
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(self.shape)]
        for s, m in zip(self.level_shapes, self.sizes):
            c = coeffs[off : off + m].reshape(s)
            off += m
            if s != self.shape:
                c = F.interpolate(c[None, None], size=self.shape, mode=mode, align_corners=True)[
                    0, 0
                ]
            out = c if out is None else out + c
        return out

    def from_fine(self, u: Tensor) -> Tensor:
        """A coefficient vector whose :meth:`to_fine` is ``u`` (``u`` on level 0)."""
        if tuple(u.shape) != self.shape:
            raise ValueError(f"u: expected the fine shape {self.shape}, received {tuple(u.shape)}")
        z = torch.zeros(self.size - self.sizes[0], dtype=u.dtype, device=u.device)
        return torch.cat([u.reshape(-1), z])
