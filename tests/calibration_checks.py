"""Shared checks of the stale-calibration warnings (ProbConserv and RandomGridNP)."""

from __future__ import annotations

import warnings
from collections.abc import Callable


def stale_calibration_messages(call: Callable[[], object]) -> list[str]:
    """The messages of the 'made for other weights' warnings that ``call()`` raises."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        call()
    return [str(r.message) for r in rec if "made for other weights" in str(r.message)]
