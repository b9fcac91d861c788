"""Computing in the dtype the package chose, inside a caller's ``torch.autocast`` block.

Under ``torch.autocast`` torch runs matrix products (``matmul``, ``linear``, ``conv``) in
bfloat16 or float16 while Cholesky factors and solves stay in float32: a posterior's draws came
back in bfloat16 or 3e-3 off, a Kronecker solve failed with "both inputs should have same
dtype", and a network trained or evaluated by a package fit came out in a precision its
settings did not name. :func:`own_precision` turns autocast off for a block (or a decorated
function) and back on afterwards, so a caller's autocast keeps applying to the caller's own
code only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar

import torch

#: the device types whose autocast is turned off (the package runs on CPU and CUDA only)
_DEVICE_TYPES = ("cpu", "cuda")

F = TypeVar("F", bound=Callable[..., Any])


class _OwnPrecision:
    """The context manager / decorator :func:`own_precision` returns."""

    __slots__ = ("_stack",)

    def __enter__(self) -> None:
        self._stack = ExitStack()
        for device_type in _DEVICE_TYPES:
            if torch.is_autocast_enabled(device_type):
                self._stack.enter_context(torch.autocast(device_type, enabled=False))

    def __exit__(self, *exc: Any) -> bool:
        return bool(self._stack.__exit__(*exc))

    def __call__(self, fn: F) -> F:
        return _in_own_precision(fn)


def _in_own_precision(fn: F) -> F:
    # a plain wrapper (contextlib's decorator form kept its context manager in a variable
    # named ``self`` in every decorated call's frame, which a traceback's or a debugger's
    # reading of ``self`` then found before the method's own)
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _OwnPrecision():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def own_precision() -> _OwnPrecision:
    """Autocast off on every device type where the caller turned it on, the caller's autocast
    back in force afterwards: a context manager (``with own_precision():``), or a decorator
    (``@own_precision()``) of a public method whose arithmetic runs in the dtype of its
    tensors and weights. Each ``with`` (and each call of a decorated function) enters a fresh
    one, so nesting and recursion are safe."""
    return _OwnPrecision()
