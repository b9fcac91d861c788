"""Where a warning should point: the first frame outside the bayesphys package.

A fixed ``stacklevel`` is right only for one call path: a fit warns at its caller's line when
the user calls it, but inside the package's own loops (foci selection, calibration hooks,
``fit_many``) that line is the package's. :func:`user_stacklevel` walks the stack instead.
"""

from __future__ import annotations

import os
import sys

__all__ = ["user_stacklevel"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` made by the function calling this: the first
    frame whose file lies outside the package (the outermost package frame when every frame is
    the package's, e.g. under the ``bayesphys`` command)."""
    frame = sys._getframe(1)  # the function about to warn: stacklevel 1
    level = 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        _PACKAGE
    ):
        frame = frame.f_back
        level += 1
    return level
