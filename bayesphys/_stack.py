"""Where a warning should point: the first frame outside the bayesphys package (and outside the
wrappers torch and contextlib put around its methods).

A fixed ``stacklevel`` is right only for one call path: a fit warns at its caller's line when
the user calls it, but inside the package's own loops (foci selection, calibration hooks,
``fit_many``) that line is the package's. :func:`user_stacklevel` walks the stack instead; every
warning the package raises takes its level from it.

Third-party libraries that call back into the package (gpytorch, linear_operator, pyro,
torchdiffeq, scipy) are not skipped: none of the package's warnings is raised inside such a
callback (the glioma forward solve that pyro's NUTS runs skips its stability check, the
torchdiffeq field raises instead of warning), so the walk stops only at the caller's own frame.
A warning added inside one would point at the library's frame, and these directories would
then belong in ``_SKIPPED``.
"""

from __future__ import annotations

import contextlib
import os
import sys

import torch

__all__ = ["user_stacklevel"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
# frames skipped with the package's: the wrappers between a user's call and the package
# (``torch.no_grad()`` as a decorator runs the method from contextlib / torch frames)
_SKIPPED = (
    _PACKAGE,
    os.path.abspath(contextlib.__file__),
    os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,
)


def user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` made by the function calling this: the first
    frame whose file lies outside the package and the wrappers torch and contextlib put around
    its methods (the outermost such frame when there is none, e.g. under the ``bayesphys``
    command)."""
    frame = sys._getframe(1)  # the function about to warn: stacklevel 1
    level = 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        _SKIPPED
    ):
        frame = frame.f_back
        level += 1
    return level
