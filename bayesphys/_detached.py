"""Results computed without gradient, said so: a warning where a prediction is made under
``torch.no_grad`` although an input the caller passes requires grad.

Such a result is detached from that input: a loss built on it gives the input no gradient
(``None``, or a zero step of the caller's optimiser), and nothing said why. The fitted
models' predictions (:meth:`GPPDESolver.predict`, :meth:`RandomGridNP.posterior`,
:meth:`MetaFlowMatching.predict`, ...) are computed so; their docstrings say so too.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

from ._stack import user_stacklevel
from ._warning_types import BayesphysUserWarning

F = TypeVar("F", bound=Callable[..., Any])


def requires_grad(value: Any) -> bool:
    """Whether ``value`` (a tensor, or a list, tuple or dict of them, one level deep)
    requires grad."""
    if isinstance(value, Tensor):
        return value.requires_grad
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, Tensor) and v.requires_grad for v in value)
    return False


def warn_detached(where: str, **inputs: Any) -> None:
    """A ``UserWarning`` naming those of ``inputs`` (argument name -> value) that require grad,
    when autograd records in the caller (``torch.is_grad_enabled()``): ``where``'s result is
    computed without gradient, detached from them."""
    if not torch.is_grad_enabled():
        return
    names = [name for name, value in inputs.items() if requires_grad(value)]
    if not names:
        return
    them = ", ".join(names)
    warnings.warn(
        f"{where}: {them} require{'s' if len(names) == 1 else ''} grad, but the result is "
        f"computed without gradient in {'it' if len(names) == 1 else 'them'}: it is detached "
        f"from {them}, so a loss built on it gives {them} no gradient (the docstring says "
        "what is differentiable; pass detached values, e.g. x.detach(), to silence this)",
        BayesphysUserWarning,
        stacklevel=user_stacklevel(),
    )


def no_grad_detached(*names: str) -> Callable[[F], F]:
    """Decorator: run the method under ``torch.no_grad()`` (as ``@torch.no_grad()``), first
    warning (:func:`warn_detached`, in the caller's grad mode) when any of its arguments
    ``names`` requires grad."""

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if torch.is_grad_enabled():
                try:
                    bound = signature.bind_partial(*args, **kwargs).arguments
                except TypeError:  # the call itself is wrong: the method names the problem
                    bound = {}
                warn_detached(fn.__qualname__, **{n: bound.get(n) for n in names})
            with torch.no_grad():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
