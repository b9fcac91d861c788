"""A wall-clock budget for a training loop that stops every rank after the same step."""

from __future__ import annotations

import time
from typing import Any

from ._checks import check_int, check_real

__all__ = ["TimeBudget", "check_max_seconds"]


def check_max_seconds(max_seconds: Any) -> float | None:
    """``max_seconds``: ``None`` (no budget) or a number ``> 0``."""
    if max_seconds is None:
        return None
    return check_real("max_seconds", max_seconds, minimum=0.0, strict=True)


class TimeBudget:
    r"""Stop a training loop once ``max_seconds`` of wall time have passed since :meth:`start`.

    :meth:`over` is asked once per step by every rank. Under a process group of several ranks
    (``sync`` an active :class:`~bayesphys.distributed.GradientSync`) the ranks vote every
    ``every`` steps (one all-reduce) and stop together once any of them is over: each reading
    its own clock, one rank stopped a step before the others, which then waited in their next
    collective until the group's timeout. ``max_seconds=None``: never over.
    """

    def __init__(self, max_seconds: float | None, sync: Any = None, *, every: int = 5) -> None:
        self.max_seconds = check_max_seconds(max_seconds)
        self.every = check_int("every", every, minimum=1)
        self._voting = bool(getattr(sync, "active", False))
        self._sync = sync
        self._asked = 0
        self._t0 = time.perf_counter()
        self.reached = False

    def start(self) -> None:
        """Start the clock (the budget counts from here)."""
        self._t0 = time.perf_counter()

    def over(self, elapsed: float | None = None) -> bool:
        """Whether the budget is spent (``elapsed`` seconds, default the time since
        :meth:`start`); every rank must ask at the same steps."""
        if self.max_seconds is None:
            return False
        self._asked += 1
        if self._voting and self._asked % self.every:
            return False  # the ranks decide together, every ``every`` steps
        spent = time.perf_counter() - self._t0 if elapsed is None else elapsed
        late = spent >= self.max_seconds
        if self._voting:
            late = self._sync.mean(1.0 if late else 0.0) > 0.0  # any rank over: all stop
        self.reached = self.reached or late
        return late

    def message(self, steps: int) -> str:
        """The fit's status line once the budget stopped it after ``steps`` steps."""
        return f"time budget ({self.max_seconds:.3g} s) reached after {steps} steps"
