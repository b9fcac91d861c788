"""Argument check of the neural-process package that the shared ones do not cover: real-valued
tensors (a complex array would lose its imaginary part in the cast). The generic flag,
one-element scalar and callback checks live in :mod:`bayesphys._checks`."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from .._device import as_tensor

__all__ = ["real_tensor"]


def real_tensor(name: str, value: Any, **kw: Any) -> Tensor:
    """:func:`~bayesphys._device.as_tensor` that refuses complex values (``TypeError``)."""
    cplx = value.is_complex() if isinstance(value, Tensor) else np.iscomplexobj(value)
    if cplx:
        dt = value.dtype if isinstance(value, Tensor) else np.asarray(value).dtype
        raise TypeError(f"{name}: expected real values, received complex ({dt})")
    return as_tensor(name, value, **kw)
