"""Helpers shared by the GPME problems of ProbConserv (Hansen et al., ICML 2023): float64
conversion, scalar checks, and the masking and powers of the closed-form solutions.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..._checks import check_scalar
from ..._device import as_tensor

_F64 = torch.float64


def _f64(v, name: str) -> Tensor:
    """``v`` as a float64 tensor of its own shape ``[*]``; complex values are refused with a
    ``TypeError`` naming ``name`` (the cast dropped the imaginary part without a word)."""
    return as_tensor(name, v, dtype=_F64, finite=False)


def _real(name: str, value, **kw) -> float:
    """:func:`check_scalar` accepting a one-element tensor (as ``float()`` did)."""
    return check_scalar(name, value, one_element=True, **kw)


def _nan_at(t: Tensor, out: Tensor) -> Tensor:
    """``out`` with NaN wherever ``t`` is NaN (``t, out`` broadcast): the closed forms below
    mask by ``t > 0`` or clamp ``t``, which turned a NaN time into a silent 0."""
    return torch.where(torch.isnan(t), t, out)


def _pos_pow(s: Tensor, e: Tensor | float) -> Tensor:
    """:math:`s^e` where ``s > 0``, else 0 (``s, e`` broadcast); finite gradients at ``s = 0``
    (a plain ``pow`` gives ``inf * 0 = nan`` there for ``e < 1``)."""
    pos = s > 0
    return torch.where(pos, torch.where(pos, s, torch.ones_like(s)).pow(e), torch.zeros_like(s))


def _check_broadcast(**named) -> None:
    """Refuse (``ValueError`` naming every argument and its shape) values whose shapes do not
    broadcast together: the closed forms failed inside torch ("The size of tensor a (3) must
    match the size of tensor b (4)"), naming none of them."""
    try:
        shapes = {
            k: tuple(v.shape) if isinstance(v, Tensor) else np.shape(v) for k, v in named.items()
        }
    except (TypeError, ValueError):  # no shape (a ragged list): the conversion names it
        return
    try:
        torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        got = ", ".join(f"{k} {s}" for k, s in shapes.items())
        raise ValueError(
            f"{', '.join(shapes)}: expected shapes that broadcast together, received {got}"
        ) from None
