"""Argument checks of the neural-process package that the shared ones do not cover: flags
(a string such as ``"no"`` is truthy and would silently switch a setting on), real-valued
tensors (a complex array would lose its imaginary part in the cast) and user callbacks."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from torch import Tensor

from .._device import as_tensor

__all__ = ["as_scalar", "check_bool", "check_callback", "real_tensor"]


def as_scalar(value: Any) -> Any:
    """A one-element tensor or array as its Python number (other values unchanged), so that
    :func:`~bayesphys._checks.check_real` can check it."""
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a ``bool``; anything else (``"no"``, ``1``, ``None``) is a ``TypeError``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name}: expected True or False, received {type(value).__name__} {value!r}")


def real_tensor(name: str, value: Any, **kw: Any) -> Tensor:
    """:func:`~bayesphys._device.as_tensor` that refuses complex values (``TypeError``)."""
    cplx = value.is_complex() if isinstance(value, Tensor) else np.iscomplexobj(value)
    if cplx:
        dt = value.dtype if isinstance(value, Tensor) else np.asarray(value).dtype
        raise TypeError(f"{name}: expected real values, received complex ({dt})")
    return as_tensor(name, value, **kw)


def check_callback(name: str, fn: Any, args: tuple[Any, ...], labels: tuple[str, ...]) -> None:
    """``fn`` must be callable as ``fn(*args)``, its positional arguments named ``labels`` in
    the message (``TypeError``)."""
    if not callable(fn):
        raise TypeError(f"{name}: expected a callable or None, received {type(fn).__name__}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # no introspectable signature (some builtins)
        return
    try:
        sig.bind(*args)
    except TypeError as err:
        raise TypeError(
            f"{name}: expected a callable {name}({', '.join(labels)}), received one with signature "
            f"{sig} ({err})"
        ) from None
