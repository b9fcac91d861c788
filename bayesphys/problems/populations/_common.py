"""Helpers shared by the population-pair generators of Meta Flow Matching (Atanackovic et
al., ICLR 2025): the plane rotation and the checks of the ``dtype`` and split-size arguments.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..._checks import check_int
from ..._device import resolve_dtype


def _rotation(theta: Tensor) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _check_dtype(dtype: Any) -> torch.dtype | None:
    """A floating dtype (or its name); ``None`` keeps the generator's float64 values."""
    return None if dtype is None else resolve_dtype(dtype)


def _check_sizes(**sizes: int) -> int:
    """Pair counts ``>= 0`` (negative ones gave overlapping splits, e.g. ``cal = [-1]``) and at
    least one pair in all; returns the total."""
    total = sum(check_int(k, v, minimum=0) for k, v in sizes.items())
    if total < 1:
        raise ValueError(f"{' + '.join(sizes)}: expected at least one pair, received 0")
    return total
