"""Renamed keyword arguments: the old name keeps working for a while, with a ``FutureWarning``.

``@renamed_kwargs(num_draws="num_samples")`` on a function whose parameter is now called
``num_samples``: a call with ``num_draws=k`` warns (at the user's line,
:func:`~bayesphys._stack.user_stacklevel`) and runs as ``num_samples=k``; a call that gives both
names (the new one by keyword or by position) is a ``TypeError`` naming both. The wrapper is
made with :func:`functools.wraps`, so ``inspect.signature``, ``help`` and the API docs show the
new name only.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from ._stack import user_stacklevel
from ._warning_types import BayesphysFutureWarning

__all__ = ["renamed_kwargs"]

_F = TypeVar("_F", bound=Callable[..., Any])

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _positions(fn: Callable[..., Any], renames: dict[str, str]) -> dict[str, int | None]:
    """``{new: index}``: where each new name sits among ``fn``'s positional parameters (``None``
    when it can only be given by keyword); refuses names that do not fit ``fn``."""
    params = inspect.signature(fn).parameters
    names = list(params)
    positions: dict[str, int | None] = {}
    for old, new in renames.items():
        if not isinstance(new, str) or new not in params:
            raise TypeError(
                f"renamed_kwargs: {fn.__qualname__} has no parameter {new!r} (the new name "
                f"of {old!r})"
            )
        if old in params:
            raise TypeError(
                f"renamed_kwargs: {fn.__qualname__} still has a parameter {old!r} (the old name)"
            )
        kind = params[new].kind
        positions[new] = names.index(new) if kind in _POSITIONAL else None
    return positions


def renamed_kwargs(**renames: str) -> Callable[[_F], _F]:
    """Decorator accepting each old keyword ``old`` of ``renames = {old: new}`` for ``new``.

    A call with ``old=value`` emits ``FutureWarning("<qualname>: `old` is renamed `new`; the old
    name will be removed in a future release")`` (``<qualname>`` the decorated function's, e.g.
    ``MFMEnsemble.posterior``) and passes ``new=value``; giving ``old`` together with
    ``new`` (by keyword, or by position where ``new`` is positional) is a ``TypeError`` naming
    both. Calls that use the new name, by keyword or position, are passed through untouched.
    """
    if not renames:
        raise TypeError("renamed_kwargs: expected at least one old=new pair")

    def decorate(fn: _F) -> _F:
        positions = _positions(fn, renames)
        where = fn.__qualname__

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                pos = positions[new]
                if new in kwargs or (pos is not None and len(args) > pos):
                    raise TypeError(
                        f"{where}: received both `{old}` (its old name) and `{new}`; "
                        f"give `{new}` only"
                    )
                warnings.warn(
                    f"{where}: `{old}` is renamed `{new}`; the old name will be removed in a "
                    "future release",
                    BayesphysFutureWarning,
                    stacklevel=user_stacklevel(),
                )
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
