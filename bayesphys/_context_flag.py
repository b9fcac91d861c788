"""A boolean that holds within a ``with`` block, for the calls that block makes.

Several helpers stay silent (or skip a check) when their caller has already warned or checked:
a loader's rebuild, a posterior drawing through ``predict`` once per draw, a block of dense
work whose sizes were checked, a training loop whose parameters were checked once. Each such
state is a :class:`ContextFlag`: a context variable, so it holds for the block's own thread
(or asyncio task) only; a :class:`warnings.catch_warnings` filter or a module global would
reach other threads too.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager


class ContextFlag:
    """``False`` outside, ``True`` inside a ``with flag.raised():`` block (nested blocks
    included; restored on exit, an exception's too)."""

    def __init__(self, name: str) -> None:
        self._var: contextvars.ContextVar[bool] = contextvars.ContextVar(name, default=False)

    @contextmanager
    def raised(self) -> Iterator[None]:
        """The block within which :meth:`is_raised` is true."""
        token = self._var.set(True)
        try:
            yield
        finally:
            self._var.reset(token)

    def is_raised(self) -> bool:
        """Whether the caller runs inside a :meth:`raised` block."""
        return self._var.get()
