r"""Validation of grids, sources and boundary data; periodogram frequency initialisation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .._device import check_finite
from ..problems.gp_pde import tensor_grid

__all__ = ["parse_grid", "eval_on_grid", "periodogram_peaks"]


def parse_grid(x, *, dtype: torch.dtype, device: torch.device) -> list[Tensor]:
    r"""Axes ``[n_j]`` of a tensor-product grid.

    ``x`` is a list of 1-D axes, or points ``[n_1, ..., n_d, d]`` / ``[M, d]`` that must form a
    full tensor product of sorted, distinct coordinates; anything else raises ``ValueError``.
    """
    if isinstance(x, (list, tuple)) and all(
        isinstance(a, (Tensor, Sequence)) or hasattr(a, "shape") for a in x
    ):
        axes = [torch.as_tensor(a, dtype=dtype, device=device).reshape(-1) for a in x]
    else:
        pts = torch.as_tensor(x, dtype=dtype, device=device)
        if pts.ndim < 2:
            raise ValueError(
                f"x: expected grid axes or points [M, d], received shape {tuple(pts.shape)}"
            )
        pts = pts.reshape(-1, pts.shape[-1])
        axes = [torch.unique(pts[:, j]) for j in range(pts.shape[1])]
        if math.prod(a.numel() for a in axes) != pts.shape[0]:
            raise ValueError(
                f"x: expected a tensor-product grid; {pts.shape[0]} points have "
                f"{[a.numel() for a in axes]} distinct coordinates per dimension"
            )
        # every grid point must be present exactly once
        idx = torch.stack(
            [torch.searchsorted(a, pts[:, j].contiguous()) for j, a in enumerate(axes)], -1
        )
        flat = torch.zeros(math.prod(a.numel() for a in axes), dtype=torch.long, device=device)
        lin = torch.zeros(pts.shape[0], dtype=torch.long, device=device)
        for j, a in enumerate(axes):
            lin = lin * a.numel() + idx[:, j]
        flat.index_add_(0, lin, torch.ones_like(lin))
        if bool((flat != 1).any()):
            raise ValueError(
                "x: expected a tensor-product grid; some grid points are missing or repeated"
            )
    if not 1 <= len(axes) <= 3:
        raise ValueError(f"x: expected a 1-, 2- or 3-D grid, received {len(axes)} axes")
    for j, a in enumerate(axes):
        check_finite(f"x[{j}]", a)
        if a.numel() < 4:
            raise ValueError(f"x[{j}]: expected at least 4 grid points, received {a.numel()}")
        if bool((a[1:] <= a[:-1]).any()):
            raise ValueError(f"x[{j}]: expected strictly increasing coordinates")
    return axes


def eval_on_grid(name: str, value, axes: list[Tensor]) -> Tensor:
    """Evaluate a callable ``value(*coords)`` or check a tensor on the grid ``[n_1..n_d]``."""
    shape = tuple(a.numel() for a in axes)
    ref = axes[0]
    if callable(value):
        out = value(*tensor_grid(axes).unbind(-1))
        if not isinstance(out, Tensor):
            out = torch.as_tensor(out)
    else:
        out = torch.as_tensor(value)
    out = out.to(dtype=ref.dtype, device=ref.device)
    if tuple(out.shape) != shape:
        raise ValueError(
            f"{name}: expected values of shape {shape} on the grid, received {tuple(out.shape)}"
        )
    check_finite(name, out)
    return out


def periodogram_peaks(f: Tensor, x: Tensor, dim: int, q: int, pad: int = 8) -> Tensor:
    r"""Up to ``q`` frequencies (cycles per unit) of the largest periodogram peaks of ``f`` along ``dim``.

    Hann window, ``pad``-fold zero padding, power summed over the other dimensions; peaks
    sorted by power.
    """
    n = x.numel()
    h = float(x[1] - x[0])
    fv = torch.movedim(f, dim, -1).reshape(-1, n)
    win = torch.hann_window(n, periodic=False, dtype=f.dtype, device=f.device)
    P = (torch.fft.rfft(fv * win, n=pad * n).abs() ** 2).sum(0)
    fr = torch.fft.rfftfreq(pad * n, d=h).to(f.dtype)
    loc = (P[1:-1] > P[:-2]) & (P[1:-1] >= P[2:])
    idx = torch.nonzero(loc).squeeze(-1) + 1
    if P[0] > P[1]:
        idx = torch.cat([torch.zeros(1, dtype=idx.dtype, device=idx.device), idx])
    idx = idx[torch.argsort(P[idx], descending=True)][:q]
    return fr[idx]
