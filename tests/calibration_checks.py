"""Shared checks of the stale-calibration warnings (ProbConserv and RandomGridNP)."""

from __future__ import annotations

from collections.abc import Callable

from tests.warning_checks import messages_containing


def stale_calibration_messages(call: Callable[[], object]) -> list[str]:
    """The messages of the 'made for other weights' warnings that ``call()`` raises."""
    return messages_containing(call, "made for other weights")
