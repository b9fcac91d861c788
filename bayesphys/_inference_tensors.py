"""Naming the caller's inference tensors in a computation the package differentiates.

A function the package records autograd through (ODIL's residual function) may capture
tensors the caller created inside ``torch.inference_mode()``: data, an index. Torch cannot
record them (they have no version counter), and no mode the package turns on mends that, so
the call fails with torch's "Inference tensors cannot be saved for backward", raised from a
line of the caller's function without saying which call records the graph.
:func:`inference_tensors_named` turns that error into one naming the package's function and
the remedy (create the tensor outside the block, or clone it there; ``torch.no_grad()``
instead of ``inference_mode()``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: the starts of torch's errors for an inference tensor in a recorded computation
_TORCH_MESSAGES = (
    "Inference tensors cannot be saved for backward",
    "Inplace update to inference tensor outside InferenceMode",
)


def is_inference_tensor_error(err: BaseException) -> bool:
    """Whether ``err`` is torch's error for an inference tensor used where autograd records."""
    return isinstance(err, RuntimeError) and str(err).startswith(_TORCH_MESSAGES)


def inference_tensors_named(owner: str, captured: str) -> Callable[[F], F]:
    """A decorator: torch's inference-tensor error raised inside the decorated function is
    re-raised as a ``RuntimeError`` that starts with ``owner`` and says that ``captured``
    (what may hold such a tensor, e.g. "the residual function's data") was created inside
    ``torch.inference_mode()``, with the remedies; torch's error is its ``__cause__``. Every
    other exception passes unchanged."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except RuntimeError as err:
                if not is_inference_tensor_error(err):
                    raise
                raise RuntimeError(
                    f"{owner}: a tensor created inside torch.inference_mode() entered the "
                    f"autograd graph {owner} records ({captured}); torch cannot record it. "
                    "Create it outside the block (or .clone() it outside), or use "
                    "torch.no_grad() instead of torch.inference_mode() where it is made. "
                    f"(torch: {str(err).split('. ')[0]})"
                ) from err

        return wrapper  # type: ignore[return-value]

    return decorate
