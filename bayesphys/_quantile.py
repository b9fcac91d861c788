"""Quantiles of many values: of all the entries of a tensor at any size, and of draws per
point by blocks.

``torch.quantile`` refuses a reduced dimension of more than ``2**24`` entries ("quantile() input
tensor is too large"): a calibration over the z-scores of 1000 validation fields of 100 x 200
points (2e7 entries) met it. Past that size the same linear interpolation is computed from one
sort.
"""

from __future__ import annotations

import torch
from torch import Tensor

# the largest reduced dimension torch.quantile takes
_TORCH_QUANTILE_MAX = 2**24


def quantile_of_all(x: Tensor, q: float) -> Tensor:
    """The ``q``-quantile ``[]`` of all the entries of ``x [*]`` (linear interpolation between
    order statistics, as ``torch.quantile``'s default: with the sorted entries
    :math:`x_{(0)} \\le \\dots \\le x_{(n-1)}` and :math:`h = q (n - 1)`, the value
    :math:`x_{(\\lfloor h \\rfloor)} + (h - \\lfloor h \\rfloor)(x_{(\\lfloor h \\rfloor + 1)} -
    x_{(\\lfloor h \\rfloor)})`), for any number of entries. NaN entries give NaN, as in
    ``torch.quantile``."""
    flat = x.reshape(-1)
    if flat.numel() <= _TORCH_QUANTILE_MAX:
        return torch.quantile(flat, q)
    if bool(torch.isnan(flat).any()):
        return flat.new_tensor(float("nan"))
    n = flat.numel()
    h = q * (n - 1)
    lo = int(h)
    hi = min(lo + 1, n - 1)
    if flat.device.type in ("cpu", "cuda"):
        # the two order statistics by selection (the same values as from the sort): a sort of
        # all the entries and its int64 indices cost 3.7x the time (2.2e7 float64 entries:
        # 7.1 s, 1.9 s) and held two arrays of their size beside them
        a = torch.kthvalue(flat, lo + 1).values
        b = a if hi == lo else torch.kthvalue(flat, hi + 1).values
        return torch.lerp(a, b, flat.new_tensor(h - lo))
    s = torch.sort(flat).values  # other devices: not every one has kthvalue
    return torch.lerp(s[lo], s[hi], s.new_tensor(h - lo))


#: draw values of one block of :func:`draw_quantiles` (4 MB in float32, and its sort)
_QUANTILE_BLOCK = 2**20


def draw_quantiles(draws: Tensor, q: Tensor) -> Tensor:
    """``torch.quantile(draws, q, dim=0)`` (linear interpolation) of draws ``[S, *shape]`` at
    levels ``q [Q]`` -> ``[Q, *shape]``, the same numbers, by blocks of points whose draws are
    sorted as contiguous rows: the quantile of all the points at once sorted a copy of all the
    draws along dim 0, about twice as slow (1000 draws of 3e4 points: 3.6 s, 1.9 s by blocks)
    and with the copy, its sort and the sort's indices held at once."""
    s = draws.shape[0]
    flat = draws.reshape(s, -1)
    block = max(1, _QUANTILE_BLOCK // max(s, 1))
    parts = [flat.new_empty((q.shape[0], 0))]  # no points: no quantiles (torch.cat of none)
    for j in range(0, flat.shape[1], block):
        cols = flat[:, j : j + block]
        rows = torch.empty(cols.mT.shape, dtype=cols.dtype, device=cols.device).copy_(cols.mT)
        parts.append(torch.quantile(rows, q, dim=-1))  # [Q, c]
    return torch.cat(parts, -1).reshape(q.shape[0], *draws.shape[1:])
